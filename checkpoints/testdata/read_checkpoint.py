"""Independent reader of a Sparrow checkpoint, Python standard library only (struct, json, hashlib).

Usage: python3 read_checkpoint.py CHECKPOINT_DIR

Parses model.safetensors (8-byte little-endian header length, JSON header, raw data) and config.json
without any Sparrow code, checks the layout rules of the format (header padded to 8 bytes, data offsets
contiguous from 0 to the end of the file, sizes matching shape x dtype), checks manifest.json's sizes and
SHA-256 digests and tokenizer.json's structure, and prints one JSON object:
{"config": {...}, "header_order": [...], "tensors": {name: {"dtype", "shape", "sum"}}, "manifest": {file: ok},
 "tokenizer": {"vocab": n, "merges": n, "added": [ids...]}}.
"""
import hashlib
import json
import os
import struct
import sys

SIZES = {"F32": 4, "F16": 2, "BF16": 2}


def values(dtype, raw):
    if dtype == "F32":
        return struct.unpack("<%df" % (len(raw) // 4), raw)
    if dtype == "F16":
        return struct.unpack("<%de" % (len(raw) // 2), raw)
    if dtype == "BF16":
        halves = struct.unpack("<%dH" % (len(raw) // 2), raw)
        return struct.unpack("<%df" % len(halves), struct.pack("<%dI" % len(halves), *[h << 16 for h in halves]))
    raise ValueError("unsupported dtype " + dtype)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0, "header length %d not a multiple of 8" % n
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    header.pop("__metadata__", None)
    order = list(header.keys())
    tensors = {}
    pos = 0
    for name in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
        e = header[name]
        begin, end = e["data_offsets"]
        assert begin == pos, "%s: begins at %d, previous tensor ended at %d" % (name, begin, pos)
        count = 1
        for d in e["shape"]:
            count *= d
        assert end - begin == count * SIZES[e["dtype"]], "%s: size mismatch" % name
        tensors[name] = {"dtype": e["dtype"], "shape": e["shape"], "sum": sum(values(e["dtype"], data[begin:end]))}
        pos = end
    assert pos == len(data), "data section holds %d bytes, tensors cover %d" % (len(data), pos)
    return order, tensors


def main():
    d = sys.argv[1]
    order, tensors = read_safetensors(os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    manifest = {}
    with open(os.path.join(d, "manifest.json")) as f:
        for name, e in json.load(f)["files"].items():
            with open(os.path.join(d, name), "rb") as g:
                blob = g.read()
            manifest[name] = len(blob) == e["size"] and hashlib.sha256(blob).hexdigest() == e["sha256"]
    with open(os.path.join(d, "tokenizer.json")) as f:
        tok = json.load(f)
    tokenizer = {
        "vocab": len(tok["model"]["vocab"]),
        "merges": len(tok["model"]["merges"]),
        "added": [a["id"] for a in tok["added_tokens"] if a["special"]],
        "space_id": tok["model"]["vocab"]["\u0120"],
    }
    json.dump({"config": config, "header_order": order, "tensors": tensors, "manifest": manifest, "tokenizer": tokenizer}, sys.stdout)


if __name__ == "__main__":
    main()
