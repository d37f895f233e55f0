"""Runs a model blob on the watch runtime over a CSV of features (for test_model_on_watch.py).

micropython model_predict.py FOLDER viper|python FEATURE_SPEC N_FEATURES
FOLDER holds model.wbl, key.bin and inputs.csv (one row of integer features per line).
Prints `MEM <free before load> <free after load> <blob size>`, `PATH viper|python`, then one
line `label p0 p1 ...` per input; every prediction runs under micropython.heap_lock().
"""

import gc
import os
import sys
import micropython
from array import array

from watch import loader


def main(folder, path, feature_spec, n_features):
    with open(folder + "/key.bin", "rb") as f:
        key = f.read()
    with open(folder + "/inputs.csv") as f:
        n = sum(1 for _ in f)
    flat = array("i", range(n * n_features))  # sized once: appending would double it
    with open(folder + "/inputs.csv") as f:
        i = 0
        for line in f:
            for v in line.split(","):
                flat[i] = int(v)
                i += 1
    gc.collect()
    before = gc.mem_free()
    m = loader.load(folder + "/model.wbl", key, feature_spec, n_features, viper=path == "viper")
    gc.collect()
    after = gc.mem_free()
    print("MEM", before, after, os.stat(folder + "/model.wbl")[6])
    print("PATH", "viper" if m.viper else "python")
    width = 1 + m.n_classes
    out = bytearray(n * width)
    x = array("i", range(n_features))
    proba = bytearray(m.n_classes)
    micropython.heap_lock()
    try:
        for i in range(n):
            for j in range(n_features):
                x[j] = flat[i * n_features + j]
            out[i * width] = m.predict(x, proba)
            for c in range(m.n_classes):
                out[i * width + 1 + c] = proba[c]
    finally:
        micropython.heap_unlock()
    for i in range(n):
        print(" ".join([str(v) for v in out[i * width:(i + 1) * width]]))


main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
