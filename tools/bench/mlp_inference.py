"""Int8 MLP 12-16-2 on the MicroPython binary: ours against a plain float-list MLP, and the
watch runtime against TFLite (ai-edge-litert) on the exported .tflite.

    python tools/bench/mlp_inference.py [--inputs 10000]

- ours_ir / naive_ir: instructions per inference (valgrind callgrind, a harness-only run
  subtracted) of watch.mlp (viper path; plain path reported too) and of a textbook MicroPython
  MLP on float lists (the same float weights, one list per layer output).
- ours_alloc_bytes / naive_alloc_bytes: bytes allocated per inference (gc.mem_alloc, collector off).
- tflite_bit_exact: the watch runtime in MicroPython gives the same int8 logits as TFLite's
  reference kernels and its optimized kernels on every one of `--inputs` inputs (training
  windows, random int8 vectors and the rails).
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
from mp_cost import min_heap, per_call, run  # noqa: E402

from wears.mlp import fit_mlp, quantize_mlp  # noqa: E402
from wears.paths import FIRMWARE  # noqa: E402
from wears.sim.runner import compiled_tree  # noqa: E402
from wears.tflite_export import run_tflite, to_tflite  # noqa: E402

RUNNER = r'''
import sys, gc
from array import array
impl, mode, folder = sys.argv[1], sys.argv[2], sys.argv[3]
calls = int(sys.argv[4]) if len(sys.argv) > 4 else 1
x = array("i", [int(v) for v in open(folder + "/row.csv").read().split(",")])
if impl == "null":
    def predict():
        return 0
elif impl.startswith("ours"):
    from watch import loader
    m = loader.load(folder + "/model.wbl", bytes(32), 1, 12, viper=impl == "ours")
    proba = bytearray(2)
    def predict():
        return m.predict(x, proba)
else:
    exec(open(folder + "/naive.py").read())
    xf = [float(v) for v in x]
    def predict():
        return naive(xf)
if mode == "logits":
    p = bytearray(2)
    with open(folder + "/inputs.csv") as f:
        for line in f:
            vals = line.split(",")
            for i in range(12):
                x[i] = int(vals[i])
            m.predict(x, p)
            l = m.logits()
            print(l[0], l[1])
elif mode == "alloc":
    predict()
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    i = 0
    while i < 100:  # a while loop: range() would allocate
        predict()
        i += 1
    print("ALLOC", gc.mem_alloc() - before)
    import micropython
    micropython.heap_lock()
    try:
        i = 0
        while i < 100:
            predict()
            i += 1
        print("HEAP_LOCK ok")
    except MemoryError:
        print("HEAP_LOCK allocates")
    finally:
        micropython.heap_unlock()
elif mode == "ir":
    for i in range(calls):
        predict()
else:
    predict()
'''


def naive_source(float_model) -> str:
    """A plain MicroPython MLP on float lists with the float model's weights and input scaling."""
    layers = float_model.layers()
    lines = [f"OFF = {float_model.offsets_.tolist()}", f"SHIFT = {float_model.shifts_.tolist()}"]
    for i, (w, b) in enumerate(layers):
        lines.append(f"W{i} = {w.T.tolist()}")
        lines.append(f"B{i} = {b.tolist()}")
    lines += ["def dense(a, W, B, relu):",
              "    out = []",
              "    for o in range(len(W)):",
              "        s = B[o]",
              "        row = W[o]",
              "        for i in range(len(a)):",
              "            s += row[i] * a[i]",
              "        out.append(max(s, 0.0) if relu else s)",
              "    return out",
              "def naive(x):",
              "    a = [max(-128, min(127, (int(x[i]) - OFF[i]) >> SHIFT[i])) / 32.0 for i in range(len(x))]"]
    for i in range(len(layers)):
        lines.append(f"    a = dense(a, W{i}, B{i}, {i < len(layers) - 1})")
    lines.append("    return 0 if a[0] >= a[1] else 1")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.integers(-60000, 60000, size=(3000, 12))
    y = ((X[:, 0] - 0.7 * X[:, 4] + 0.3 * X[:, 7] * np.sign(X[:, 2])) > 0).astype(int)
    float_model = fit_mlp(X, y, hidden=(16,))
    qm = quantize_mlp(float_model, X, feature_spec=1)
    with tempfile.TemporaryDirectory(prefix="wears-mlp-bench-") as tmp:
        folder = Path(tmp)
        (folder / "model.wbl").write_bytes(qm.to_blob(bytes(32)))
        (folder / "naive.py").write_text(naive_source(float_model))
        np.savetxt(folder / "row.csv", X[:1], fmt="%d", delimiter=",")
        n_rand = max(0, args.inputs - len(X) - 2)
        q_inputs = np.vstack([qm.quantize(X), rng.integers(-128, 128, size=(n_rand, 12)),
                              np.full((1, 12), -128), np.full((1, 12), 127)])[:args.inputs]
        # Features that quantize to exactly these int8 inputs (shift-aligned), so the watch's
        # own quantization produces the tflite inputs.
        features = qm.offsets_ + (q_inputs.astype(np.int64) << qm.shifts_)
        assert np.array_equal(qm.quantize(features), q_inputs)
        np.savetxt(folder / "inputs.csv", features, fmt="%d", delimiter=",")
        runner = folder / "runner.py"
        runner.write_text(RUNNER)
        path = [compiled_tree(FIRMWARE, native=True) or FIRMWARE]
        proc = run(runner, ["ours", "logits", str(folder)], heap=1 << 21, path=path, timeout=1200)
        if proc.returncode:
            raise RuntimeError(proc.stdout[-800:] + proc.stderr[-800:])
        watch = np.array([[int(v) for v in line.split()] for line in proc.stdout.splitlines()])
        model = to_tflite(qm)
        ref = run_tflite(model, q_inputs, reference_kernels=True)
        opt = run_tflite(model, q_inputs, reference_kernels=False)
        exact = bool(np.array_equal(watch, ref) and np.array_equal(watch, opt))
        print(f"{len(q_inputs)} inputs: watch runtime == TFLite reference kernels: {np.array_equal(watch, ref)}, "
              f"== optimized kernels: {np.array_equal(watch, opt)}")
        null_alloc = float(run(runner, ["null", "alloc", str(folder)], heap=1 << 21, path=path).stdout.split("ALLOC")[1].split()[0])
        null_ir = per_call(runner, ["null", "ir", str(folder)], args.calls, heap=1 << 21, path=path)
        out = {}
        for impl in ("ours", "ours_plain", "naive"):
            alloc = run(runner, [impl, "alloc", str(folder)], heap=1 << 21, path=path)
            # gc.mem_alloc counts 16-byte blocks; the harness's own are subtracted; a run under
            # heap_lock proves a zero.
            out[f"{impl}_alloc_bytes"] = max(0.0, (float(alloc.stdout.split("ALLOC")[1].split()[0]) - null_alloc) / 100)
            if "HEAP_LOCK ok" in alloc.stdout:
                out[f"{impl}_alloc_bytes"] = 0.0
            out[f"{impl}_ir"] = round(per_call(runner, [impl, "ir", str(folder)], args.calls, heap=1 << 21,
                                               path=path) - null_ir)
            print(f"{impl:11s} {out[f'{impl}_ir']:>8} instructions/inference, {out[f'{impl}_alloc_bytes']:>8.0f} B "
                  "allocated/inference", flush=True)
        ours_heap = min_heap(runner, ["ours", "heap", str(folder)], path=path) - min_heap(
            runner, ["null", "heap", str(folder)], path=path)
        agreement = float(np.mean(qm.classes_[qm.predict(X)] == float_model.predict(X)))
        result = {"shape": list(qm.shape), "blob_bytes": qm.size_bytes, "ours_ir": out["ours_ir"],
                  "ours_plain_ir": out["ours_plain_ir"], "naive_ir": out["naive_ir"],
                  "naive_over_ours": round(out["naive_ir"] / out["ours_ir"], 1),
                  "ours_alloc_bytes": out["ours_alloc_bytes"], "ours_plain_alloc_bytes": out["ours_plain_alloc_bytes"],
                  "naive_alloc_bytes": out["naive_alloc_bytes"], "ours_min_heap_bytes": ours_heap,
                  "tflite_bit_exact": exact, "tflite_inputs": int(len(q_inputs)),
                  "float_agreement": round(agreement, 4)}
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
