"""WEARS firmware entry point."""

import watch.app

watch.app.main()
