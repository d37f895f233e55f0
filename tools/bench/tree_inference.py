"""Tree-ensemble inference on the MicroPython binary: ours against m2cgen and everywhereml.

    python tools/bench/tree_inference.py [--rows 200]

One forest (scikit-learn RandomForest, 20 trees of depth 6, 12 features, fitted on synthetic
integer features) exported three ways and run by the same MicroPython unix binary, every model
module precompiled by mpy-cross as it would be deployed:
- ours: the quantized blob run by watch.model (viper path; the plain path reported too);
- m2cgen: `export_to_python` (nested if-statements building lists);
- everywhereml: `to_micropython` of its RandomForestClassifier wrapper (same seed, same trees).
A "null" model (predict returns 0) runs the same harness; its instructions, allocations and
heap are subtracted from every figure. Figures: instructions per inference (valgrind callgrind: a run with N inferences minus a run
with none), bytes allocated per inference (gc.mem_alloc with the collector off), the smallest
heap that loads the model and runs it (the harness's own heap subtracted; for ours this
includes the runtime's modules, which a watch build freezes into flash), the RAM the loaded
model itself takes (ours: after the runtime is imported; theirs: the model module), and agreement with scikit-learn's float predictions.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mp_cost import compile_mpy, min_heap, per_call, run  # noqa: E402

from wears.export import quantize_forest  # noqa: E402
from wears.paths import FIRMWARE  # noqa: E402
from wears.sim.runner import compiled_tree  # noqa: E402

KEY = bytes(32)

# Runs in MicroPython. argv: impl, mode (agree | alloc | ir | heap), folder, [calls].
RUNNER = r'''
import sys, gc
from array import array
impl, mode, folder = sys.argv[1], sys.argv[2], sys.argv[3]
calls = int(sys.argv[4]) if len(sys.argv) > 4 else 1
rows = []
with open(folder + "/rows.csv") as f:
    for line in f:
        rows.append(array("i", [int(v) for v in line.split(",")]))
        if mode == "heap":
            break
if impl.startswith("ours"):
    from watch import loader  # the loader and the runtime, the same for every model (frozen into flash on a watch)
gc.collect()
ram0 = gc.mem_alloc()
if impl == "null":  # the harness alone: subtracted from every figure
    def predict(x):
        return 0
elif impl.startswith("ours"):
    m = loader.load(folder + "/model.wbl", bytes(32), 1, 12, viper=impl == "ours")
    proba = bytearray(2)
    def predict(x):
        return m.predict(x, proba)
else:
    sys.path.append(folder)
    if impl == "m2cgen":
        import m2c_model
        def predict(x):
            v = m2c_model.score(x)
            return 0 if v[0] >= v[1] else 1
    else:
        import eml_model
        predict = eml_model.model.predict
gc.collect()
if mode == "ram":
    print("RAM", gc.mem_alloc() - ram0)
if mode == "agree":
    for x in rows:
        print(predict(x))
elif mode == "alloc":
    x = rows[0]
    predict(x)
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    i = 0
    n = len(rows)
    while i < 100:  # a while loop: range() would allocate
        predict(rows[i % n])
        i += 1
    print("ALLOC", gc.mem_alloc() - before)
    import micropython
    micropython.heap_lock()
    try:
        i = 0
        while i < 100:
            predict(rows[i % n])
            i += 1
        print("HEAP_LOCK ok")
    except MemoryError:
        print("HEAP_LOCK allocates")
    finally:
        micropython.heap_unlock()
elif mode == "ir":
    n = len(rows)
    for i in range(calls):
        predict(rows[i % n])
else:
    predict(rows[0])
'''


def build(folder: Path, rows: int, seed: int = 0):
    from everywhereml.sklearn.ensemble import RandomForestClassifier as EmlForest
    from sklearn.ensemble import RandomForestClassifier
    import m2cgen

    rng = np.random.default_rng(seed)
    X = rng.integers(-30000, 30000, size=(3000, 12))
    y = ((X[:, 0] + 0.5 * X[:, 1] - X[:, 2] + 0.3 * X[:, 5] * np.sign(X[:, 7])) > 0).astype(int)
    X_test = rng.integers(-30000, 30000, size=(rows, 12))
    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=seed).fit(X, y)
    eml = EmlForest(n_estimators=20, max_depth=6, random_state=seed).fit(X, y)
    assert all(np.array_equal(a.tree_.threshold, b.tree_.threshold) for a, b in zip(forest.estimators_, eml.estimators_))
    qf = quantize_forest(forest, X, feature_spec=1)
    (folder / "model.wbl").write_bytes(qf.to_blob(KEY))
    np.savetxt(folder / "rows.csv", X_test, fmt="%d", delimiter=",")
    src = folder / "src"
    src.mkdir()
    (src / "m2c_model.py").write_text(m2cgen.export_to_python(forest))
    eml_code = eml.to_micropython(instance_name="model").rstrip()
    # everywhereml 0.2.40's template ends in "RandomForestClassifier model", not valid Python:
    # the instance it means is made here.
    if eml_code.endswith("RandomForestClassifier model"):
        eml_code = eml_code[:-len("RandomForestClassifier model")] + "model = RandomForestClassifier()"
    (src / "eml_model.py").write_text(eml_code + "\n")
    for name in ("m2c_model", "eml_model"):
        compile_mpy(src / f"{name}.py", folder / f"{name}.mpy")
    runner = folder / "runner.py"
    runner.write_text(RUNNER)
    return forest, qf, X_test, runner, len((folder / "model.wbl").read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--calls", type=int, default=400, help="inferences counted under callgrind")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wears-tree-bench-") as tmp:
        folder = Path(tmp)
        forest, qf, X_test, runner, blob_bytes = build(folder, args.rows)
        firmware = compiled_tree(FIRMWARE, native=True) or FIRMWARE
        path = [firmware]
        sk = forest.predict(X_test)
        out: dict = {"forest": "RandomForest 20 trees depth 6, 12 features", "blob_bytes": blob_bytes,
                     "n_nodes": qf.n_nodes}
        null_alloc = float(run(runner, ["null", "alloc", str(folder)], heap=1 << 21, path=path).stdout.split("ALLOC")[1].split()[0])
        null_ir = per_call(runner, ["null", "ir", str(folder)], args.calls, heap=1 << 21, path=path)
        null_heap = min_heap(runner, ["null", "heap", str(folder)], path=path)
        print(f"harness: {null_ir:.0f} instructions per call, {null_heap} B of heap (subtracted below)")
        for impl in ("ours", "ours_plain", "m2cgen", "everywhereml"):
            proc = run(runner, [impl, "agree", str(folder)], heap=1 << 21, path=path)
            if proc.returncode:
                raise RuntimeError(f"{impl}: {proc.stdout[-800:]}{proc.stderr[-800:]}")
            pred = np.array([int(v) for v in proc.stdout.split()])
            out[f"{impl}_agreement"] = float(np.mean(pred == sk))
            alloc = run(runner, [impl, "alloc", str(folder)], heap=1 << 21, path=path)
            # gc.mem_alloc counts 16-byte blocks; the harness's own are subtracted; a run under
            # heap_lock proves a zero.
            out[f"{impl}_alloc_bytes"] = max(0.0, (float(alloc.stdout.split("ALLOC")[1].split()[0]) - null_alloc) / 100)
            if "HEAP_LOCK ok" in alloc.stdout:
                out[f"{impl}_alloc_bytes"] = 0.0
            ram = run(runner, [impl, "ram", str(folder)], heap=1 << 21, path=path).stdout
            out[f"{impl}_model_ram_bytes"] = int(ram.split("RAM")[1].split()[0])
            out[f"{impl}_min_heap_bytes"] = min_heap(runner, [impl, "heap", str(folder)], path=path) - null_heap
            out[f"{impl}_ir"] = round(per_call(runner, [impl, "ir", str(folder)], args.calls, heap=1 << 21,
                                               path=path) - null_ir)
            print(f"{impl:13s} {out[f'{impl}_ir']:>9} instructions/inference, {out[f'{impl}_alloc_bytes']:>7.0f} B "
                  f"allocated/inference, min heap {out[f'{impl}_min_heap_bytes']:>7} B, agrees with "
                  f"scikit-learn on {100 * out[f'{impl}_agreement']:.1f}%", flush=True)
        result = {
            "ours_ir": out["ours_ir"], "ours_plain_ir": out["ours_plain_ir"], "m2cgen_ir": out["m2cgen_ir"],
            "everywhereml_ir": out["everywhereml_ir"],
            "m2cgen_over_ours": round(out["m2cgen_ir"] / out["ours_ir"], 1),
            "everywhereml_over_ours": round(out["everywhereml_ir"] / out["ours_ir"], 1),
            "ours_alloc_bytes": out["ours_alloc_bytes"], "ours_plain_alloc_bytes": out["ours_plain_alloc_bytes"],
            "m2cgen_alloc_bytes": out["m2cgen_alloc_bytes"], "everywhereml_alloc_bytes": out["everywhereml_alloc_bytes"],
            "ours_min_heap_bytes": out["ours_min_heap_bytes"], "ours_model_ram_bytes": out["ours_model_ram_bytes"],
            "m2cgen_model_ram_bytes": out["m2cgen_model_ram_bytes"],
            "everywhereml_model_ram_bytes": out["everywhereml_model_ram_bytes"], "m2cgen_min_heap_bytes": out["m2cgen_min_heap_bytes"],
            "everywhereml_min_heap_bytes": out["everywhereml_min_heap_bytes"],
            "agreement": out["ours_agreement"], "m2cgen_agreement": out["m2cgen_agreement"],
            "everywhereml_agreement": out["everywhereml_agreement"], "blob_bytes": blob_bytes,
            "rows": len(X_test),
        }
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
