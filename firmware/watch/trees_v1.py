"""Version-1 tree payloads (docs/model-blob.md) turned into the version-2 payload the tree
runtime walks (watch.model, which runs it from RAM as it runs a version-2 blob from its file).
Imported only for a version-1 blob, so a watch running current blobs keeps this code out of
its heap. The sections are read into temporary arrays first."""

from array import array

from watch import blob
from watch.buffers import zeros
from watch.blob import E_TRUNCATED, E_UNSUPPORTED_KIND


def _read(f, arr, nbytes, fail):
    if f.readinto(arr) != nbytes:
        fail(E_TRUNCATED)
    return arr


def read(f, nf, n_classes, payload_length, fail):
    """The version-2 payload (a bytearray) of the version-1 payload `f` is positioned at;
    `fail(reason)` raises."""
    counts = _read(f, bytearray(blob.TREES_HEADER_SIZE), blob.TREES_HEADER_SIZE, fail)
    n_trees, n_nodes, n_leaves, _ = blob.parse_trees_header(counts)
    if payload_length != blob.trees_payload_size(n_trees, n_nodes, n_leaves, n_classes, blob.OLD_VERSION):
        fail(E_TRUNCATED)
    if not (n_trees and n_nodes and n_leaves) or n_trees > blob.MAX_TREES:
        fail(E_UNSUPPORTED_KIND)
    roots = _read(f, array("H", range(n_trees)), 2 * n_trees, fail)
    feature = _read(f, bytearray(n_nodes), n_nodes, fail)
    threshold = _read(f, array("H", range(n_nodes)), 2 * n_nodes, fail)
    right = _read(f, array("H", range(n_nodes)), 2 * n_nodes, fail)
    leaves = _read(f, bytearray(n_leaves * n_classes), n_leaves * n_classes, fail)
    # Number the inner nodes; check what version 1 promises (indices in range, children after
    # their parents) so the references below are well defined.
    inner = array("H", range(n_nodes))
    n_inner = 0
    for i in range(n_nodes):
        if feature[i] == blob.LEAF:
            if right[i] >= n_leaves:
                fail(E_UNSUPPORTED_KIND)
        elif feature[i] >= nf or i + 1 >= n_nodes or not i < right[i] < n_nodes:
            fail(E_UNSUPPORTED_KIND)
        else:
            inner[i] = n_inner
            n_inner += 1
    for t in range(n_trees):
        if roots[t] >= n_nodes:
            fail(E_UNSUPPORTED_KIND)
    length = blob.trees_payload_size(n_trees, n_inner, n_leaves, n_classes)
    if length > blob.MAX_TREES_PAYLOAD:
        fail(E_UNSUPPORTED_KIND)
    row = blob.leaf_row_size(n_classes)
    nodes = blob.TREES_HEADER_SIZE + n_leaves * row + 2 * n_trees

    def ref(i):
        if feature[i] == blob.LEAF:
            return blob.TREES_HEADER_SIZE + right[i] * row
        return nodes + blob.NODE_SIZE * inner[i]

    m = zeros("H", length >> 1)
    m[0] = n_trees
    m[1] = n_inner
    m[2] = n_leaves
    for r in range(n_leaves):
        for c in range(n_classes):
            m[4 + (r * row >> 1) + c] = leaves[r * n_classes + c]
    for t in range(n_trees):
        m[(nodes >> 1) - n_trees + t] = ref(roots[t])
    for i in range(n_nodes):
        if feature[i] != blob.LEAF:
            k = (nodes >> 1) + 4 * inner[i]
            m[k] = feature[i]
            m[k + 1] = threshold[i]
            m[k + 2] = ref(i + 1)
            m[k + 3] = ref(right[i])
    return bytearray(m)
