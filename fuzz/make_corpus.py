#!/usr/bin/env python3
"""Write the seed corpus of the fuzz harnesses into fuzz/corpus/ (kept in
the tree; run again after changing this file). Plain bytes, no msgpack
module needed: every MessagePack kind and width is spelled out here.

corpus/decode/    MessagePack values: every kind and width, truncations,
                  the malformed cases of spec/ipc_spec.lua
corpus/frames/    [options, chunk seed] + frame stream: frames of each
                  kind, oversize and bad-kind headers, cut frames
corpus/roundtrip/ byte strings that drive the value builder's branches
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def be(fmt, v):
    return struct.pack(">" + fmt, v)


def values():
    v = {}
    v["nil"] = b"\xc0"
    v["false"] = b"\xc2"
    v["true"] = b"\xc3"
    v["fixint"] = b"\x7f"
    v["negfixint"] = b"\xe0"
    v["u8"] = b"\xcc\xff"
    v["u16"] = b"\xcd" + be("H", 65535)
    v["u32"] = b"\xce" + be("I", 2**32 - 1)
    v["u64"] = b"\xcf" + be("Q", 2**64 - 1)
    v["i8"] = b"\xd0\x80"
    v["i16"] = b"\xd1" + be("h", -32768)
    v["i32"] = b"\xd2" + be("i", -2**31)
    v["i64"] = b"\xd3" + be("q", -2**63)
    v["f32"] = b"\xca" + be("f", 1.5)
    v["f64"] = b"\xcb" + be("d", -0.0)
    v["f64nan"] = b"\xcb" + be("d", float("nan"))
    v["f64inf"] = b"\xcb" + be("d", float("inf"))
    v["fixstr"] = b"\xa3abc"
    v["str8"] = b"\xd9\x20" + b"s" * 32
    v["str16"] = b"\xda" + be("H", 300) + b"t" * 300
    v["str32"] = b"\xdb" + be("I", 70000) + b"u" * 70000
    v["strbad"] = b"\xa2\xff\xfe"
    v["bin8"] = b"\xc4\x03\x00\x01\x02"
    v["bin16"] = b"\xc5" + be("H", 256) + bytes(range(256))
    v["bin32"] = b"\xc6" + be("I", 5) + b"\x00" * 5
    v["fixarray"] = b"\x93\x01\xc0\xa1x"
    v["array16"] = b"\xdc" + be("H", 16) + b"\x01" * 16
    v["array32"] = b"\xdd" + be("I", 3) + b"\xc2\xc3\xc0"
    v["fixmap"] = b"\x82\xa1a\x01\x01\xa1b"
    v["map16"] = b"\xde" + be("H", 16) + b"".join(
        bytes([i, i]) for i in range(16))
    v["map32"] = b"\xdf" + be("I", 1) + b"\xcb" + be("d", 2.5) + b"\x90"
    v["nested"] = b"\x91" * 127 + b"\x01"
    v["toodeep"] = b"\x91" * 129 + b"\x01"
    v["mapkeyarray"] = b"\x81\x91\x01\x02"
    # {1: {1: ... nil, 3: 0}, 3: 0}: a table first, then out of order, at
    # every level (encoding it again must not take 2^depth)
    v["nested-outoforder"] = b"\x82\x01" * 100 + b"\xc0" + b"\x03\x00" * 100
    v["nested-mixed"] = b"\x82\x01" * 100 + b"\xc0" + b"\xa1x\x00" * 100
    return v


MALFORMED = [b"", b"\xc1", b"\x92\x01", b"\xdd\xff\xff\xff\xff", b"\x01\x02",
             b"\xd9\x05ab", b"\x81\xc0\x01", b"\xc7\x01\x01\x00",
             b"\x81\xcb" + be("d", float("nan")) + b"\x01",
             b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff"]


def frame(kind, body):
    return be("I", len(body)) + bytes([kind]) + body


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    v = values()
    dec = os.path.join(HERE, "corpus", "decode")
    for name, b in v.items():
        write(dec, name, b)
        if len(b) > 1:
            write(dec, "cut-" + name, b[:len(b) // 2])
            write(dec, "cut1-" + name, b[:-1])
    for i, b in enumerate(MALFORMED):
        write(dec, "malformed-%d" % i, b)

    fr = os.path.join(HERE, "corpus", "frames")
    # options byte: bits 0-1 max_message_size (16, 4096, 1 MiB, 16 MiB),
    # bit 2 pass an fd, bit 3 the handler raises, bits 4-5 chunk sizes
    small = [n for n, b in v.items() if len(b) < 400]
    every = b"".join(frame(0, v[n]) for n in small)
    for opt in (0x02, 0x12, 0x22, 0x32, 0x1a, 0x16):
        write(fr, "all-kind0-%02x" % opt, bytes([opt, 7]) + every)
    for kind in (1, 2, 3):
        for opt in (0x02, 0x06, 0x16):
            write(fr, "kind%d-%02x" % (kind, opt),
                  bytes([opt, 3]) + frame(kind, b"\xa5hello") + frame(0, b"\x01"))
    write(fr, "fd-kind0", bytes([0x06, 1]) + frame(0, b"\xc3") * 3)
    write(fr, "big", bytes([0x23, 9]) + frame(0, v["str32"]))
    write(fr, "oversize", bytes([0x00, 0]) + frame(0, b"\xd9\x20" + b"s" * 32))
    write(fr, "header-ffffffff", bytes([0x02, 0]) + b"\xff\xff\xff\xff\x00")
    write(fr, "badkind", bytes([0x02, 0]) + frame(4, b"\x01"))
    write(fr, "badkind255", bytes([0x12, 0]) + frame(255, b"\x01"))
    write(fr, "cut-header", bytes([0x02, 0]) + frame(0, b"\x01") + b"\x00\x00")
    write(fr, "cut-body", bytes([0x12, 5]) + frame(0, v["str16"])[:100])
    write(fr, "empty-body", bytes([0x02, 0]) + frame(0, b""))
    for i, b in enumerate(MALFORMED):
        write(fr, "malformed-%d" % i, bytes([0x12, i]) + frame(0, b))
    write(fr, "extra-bytes", bytes([0x02, 0]) + frame(0, b"\x01\x02"))

    rt = os.path.join(HERE, "corpus", "roundtrip")
    # op % 14: 0 nil 1 bool 2 i8 3 i64 4 int boundary 5 f64 bits
    # 6 special float 7 short str 8 long str 9/10 array 11 map 12 chain
    # 13 sparse
    for op in range(14):
        write(rt, "op%02d" % op, bytes([op, 1, 2, 3, 4, 5, 6, 7, 8]))
    for i in range(29):
        write(rt, "int%02d" % i, bytes([4, i]))
    for i in range(12):
        write(rt, "float%02d" % i, bytes([6, i]))
    for i in range(11):
        write(rt, "str%02d" % i, bytes([8, i, 0x41 if i % 2 else 0xff]))
    # arrays: sel % 20 elements, or 65535/65536 for sel 0x80/0x81;
    # maps: 15-17 for sel >= 0xf0, 65536 for sel 0x80. The widest only in
    # inputs of 8 bytes at most.
    for i, sel in enumerate([15, 16, 17]):
        write(rt, "arraywide%d" % i, bytes([9, sel]) + bytes([2, 1]) * 20)
    for i, sel in enumerate([0x80, 0x81]):
        write(rt, "arraywide%d" % (i + 3), bytes([9, sel, 2, 1]))
    for i, sel in enumerate([0xf0, 0xf1, 0xf2]):
        write(rt, "mapwide%d" % i, bytes([11, sel]) + bytes([0, 1, 2, 3]) * 12)
    write(rt, "mapwide3", bytes([11, 0x80, 0, 1, 2, 3]))
    write(rt, "strinarray", bytes([9, 1, 8, 9, 0x41]))
    write(rt, "chain127", bytes([12, 127, 2, 1]))
    write(rt, "chain130", bytes([12, 130, 2, 1]))
    write(rt, "mixed", bytes([11, 0x85, 4, 3, 6, 1, 0, 4, 9, 0x83, 6, 4, 2,
                              5, 7, 3, 0x61, 0x62, 0x63, 2, 1, 8, 12, 5,
                              13, 4, 2, 1, 3, 6, 2, 2, 6, 5]))


if __name__ == "__main__":
    main()
