#!/usr/bin/env python3
"""Checks the layout of every struct in the C header against abi/layout.txt.

The `struct_size` scheme (a caller passes sizeof of the struct it was built
with; the library reads or writes only the fields that fit) works only if a
field, once published, never moves or changes size: new fields are only
ever appended, and only to structs that start with `struct_size`.

This script reads every `typedef struct NAME { ... } NAME;` of
include/softnet_persistence.h, writes a C program that prints sizeof,
alignment and each field's offset and size with the compiler's own
`sizeof`/`offsetof`, compiles it (with $CC, and with $CXX as C++ when there
is one: both must agree) and runs it, then compares with the committed
table abi/layout.txt:

  - a field of the table that moved, changed size, or is gone, a struct
    that shrank or changed alignment, a struct that is gone, a field
    inserted before the table's last one: an ABI break (allowed only when
    SNP_ABI_VERSION is raised past abi/version.txt, and even then the table
    must be rewritten);
  - a field appended after the last one, to a struct that starts with
    `struct_size`: allowed, but the table must be updated (the check fails
    and says so); appended to any other struct (`snp_event`,
    `snp_stored_event`, `snp_uuid`: their size is fixed by the header the
    caller was built with): an ABI break;
  - a struct the table does not list: add it.

  capi/abi/check_layout.py            check (exit 1 on any difference)
  capi/abi/check_layout.py --update   rewrite abi/layout.txt from the header
  capi/abi/check_layout.py --print    print the current layout
  capi/abi/check_layout.py --self-test
                                      check the check on edited copies of
                                      the header

The table is for LP64 platforms (x86_64, aarch64 Linux); elsewhere the
check says it is skipped.
"""

import os
import re
import shlex
import subprocess
import sys
import tempfile

ABI = os.path.dirname(os.path.abspath(__file__))
CAPI = os.path.dirname(ABI)
HEADER = os.path.join(CAPI, "include", "softnet_persistence.h")
TABLE = os.path.join(ABI, "layout.txt")
VERSION = os.path.join(ABI, "version.txt")
TABLE_NOTE = """\
# Layout of every public struct of capi/include/softnet_persistence.h on
# LP64 platforms (x86_64, aarch64), as the C compiler lays it out: checked
# by capi/abi/check_layout.py (make abi-check). Fields are only ever
# appended, and only to structs that start with struct_size; rewrite with
# capi/abi/check_layout.py --update after appending one.
"""


def header_structs(text):
    """[(struct, [field, ...])] in header order."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    structs = []
    for m in re.finditer(r"typedef struct (\w+) \{(.*?)\}\s*(\w+)\s*;", text, flags=re.S):
        name, body, alias = m.group(1), m.group(2), m.group(3)
        if name != alias:
            sys.exit(f"layout: cannot read typedef struct {name} ... {alias}")
        fields = []
        for decl in split_decls(body):
            fn = re.search(r"\(\s*\*\s*(\w+)\s*\)", decl)
            if fn:
                fields.append(fn.group(1))
                continue
            m2 = re.search(r"(\w+)\s*(\[[^\]]*\]\s*)*$", decl)
            if not m2:
                sys.exit(f"layout: cannot read the field '{decl}' of {name}")
            fields.append(m2.group(1))
        structs.append((name, fields))
    if not structs:
        sys.exit(f"layout: no struct found in {HEADER}")
    return structs


def split_decls(body):
    """The declarations of a struct body, split on ';' outside parentheses."""
    decls, depth, cur = [], 0, []
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == ";" and depth == 0:
            decl = " ".join("".join(cur).split())
            if decl:
                decls.append(decl)
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        sys.exit("layout: a struct body does not end with ';'")
    return decls


def program(structs):
    lines = [
        "#include <stddef.h>",
        "#include <stdio.h>",
        '#include "softnet_persistence.h"',
        "#ifdef __cplusplus",
        "#define ALIGN_OF(T) alignof(T)",
        "#else",
        "#define ALIGN_OF(T) _Alignof(T)",
        "#endif",
        '#define S(T) printf("struct %s size %zu align %zu\\n", #T, sizeof(T), (size_t)ALIGN_OF(T));',
        '#define F(T, f) printf("  %s offset %zu size %zu\\n", #f, offsetof(T, f), sizeof(((T *)0)->f));',
        "int main(void) {",
        '    printf("model %s\\n", sizeof(void *) == 8 && sizeof(long) == 8 ? "LP64" : "other");',
    ]
    for name, fields in structs:
        lines.append(f"    S({name})")
        lines.extend(f"    F({name}, {f})" for f in fields)
    lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


def measure(structs, header):
    """Compiles and runs the program with $CC (and $CXX if present)."""
    src = program(structs)
    outputs = []
    with tempfile.TemporaryDirectory(prefix="snp-layout-") as tmp:
        compilers = [("c", os.environ.get("CC") or "cc", ["-std=c11"])]
        cxx = os.environ.get("CXX") or "c++"
        if subprocess.run(["sh", "-c", f"command -v {shlex.quote(shlex.split(cxx)[0])}"],
                          stdout=subprocess.DEVNULL).returncode == 0:
            compilers.append(("c++", cxx, ["-std=c++17", "-x", "c++"]))
        for lang, compiler, flags in compilers:
            path = os.path.join(tmp, "layout.c")
            with open(path, "w") as f:
                f.write(src)
            exe = os.path.join(tmp, f"layout-{lang.replace('+', 'x')}")
            cmd = shlex.split(compiler) + flags + [
                "-Wall", "-Wextra", "-Werror", "-I", os.path.dirname(header), path, "-o", exe]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"layout: the layout program does not compile as {lang}:\n"
                         f"{' '.join(cmd)}\n{done.stderr}")
            outputs.append((lang, subprocess.run([exe], check=True, capture_output=True,
                                                 text=True).stdout))
    if len(outputs) == 2 and outputs[0][1] != outputs[1][1]:
        sys.exit("layout: C and C++ lay the header's structs out differently")
    return outputs[0][1]


def parse(text):
    """(model, {struct: (size, align, [(field, offset, size)])}, order)."""
    model, structs, order, cur = None, {}, [], None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        words = line.split()
        if words[0] == "model":
            model = words[1]
        elif words[0] == "struct" and words[2] == "size" and words[4] == "align":
            cur = words[1]
            structs[cur] = (int(words[3]), int(words[5]), [])
            order.append(cur)
        elif len(words) == 5 and words[1] == "offset" and words[3] == "size" and cur:
            structs[cur][2].append((words[0], int(words[2]), int(words[4])))
        else:
            sys.exit(f"layout: cannot read the line '{raw}'")
    return model, structs, order


def abi_versions():
    with open(HEADER) as f:
        current = int(re.search(r"#define SNP_ABI_VERSION (\d+)", f.read()).group(1))
    with open(VERSION) as f:
        recorded = int(f.read().strip())
    return current, recorded


def compare(table, now):
    """(breaks, to_record): what the header broke, what it may add."""
    _, old, old_order = table
    _, new, new_order = now
    breaks, to_record = [], []
    for name in old_order:
        if name not in new:
            breaks.append(f"{name}: the struct is gone")
            continue
        osize, oalign, ofields = old[name]
        nsize, nalign, nfields = new[name]
        versioned = bool(ofields) and ofields[0][0] == "struct_size"
        now_at = {f: (o, s) for f, o, s in nfields}
        old_names = {f for f, _, _ in ofields}
        added = [(f, o, s) for f, o, s in nfields if f not in old_names]
        for field, off, size in ofields:
            if field not in now_at:
                same = [f for f, o, s in added if (o, s) == (off, size)]
                if same:
                    to_record.append(f"{name}.{field}: renamed {same[0]} (offset {off}, size "
                                     f"{size}): same bytes, but callers' source breaks")
                    added = [a for a in added if a[0] != same[0]]
                else:
                    breaks.append(f"{name}.{field}: the field is gone")
            elif now_at[field] != (off, size):
                noff, nsz = now_at[field]
                breaks.append(f"{name}.{field}: offset {off} size {size} became offset {noff} "
                              f"size {nsz}")
        if nalign != oalign:
            breaks.append(f"{name}: alignment {oalign} became {nalign}")
        if nsize < osize:
            breaks.append(f"{name}: sizeof {osize} became {nsize}")
        last_end = max((o + s for _, o, s in ofields), default=0)
        for field, off, size in added:
            if not versioned:
                breaks.append(f"{name}.{field}: a new field in a struct without struct_size "
                              "(its size is part of the ABI)")
            elif off < last_end:
                breaks.append(f"{name}.{field}: a new field at offset {off}, before the end of "
                              f"the last recorded field ({last_end}): only fields appended at "
                              "the end keep the struct_size scheme")
            else:
                to_record.append(f"{name}.{field}: appended at the end (offset {off}, size "
                                 f"{size}; sizeof {osize} -> {nsize}): allowed")
        if not added and nsize > osize:
            breaks.append(f"{name}: sizeof {osize} became {nsize} without a new field")
    for name in new_order:
        if name not in old:
            to_record.append(f"{name}: a new struct (sizeof {new[name][0]})")
    return breaks, to_record


def layout_of(header_text):
    with tempfile.TemporaryDirectory(prefix="snp-layout-h-") as tmp:
        path = os.path.join(tmp, "softnet_persistence.h")
        with open(path, "w") as f:
            f.write(header_text)
        return parse(measure(header_structs(header_text), path))


def self_test():
    """Runs the comparison on edited copies of the header: the check must
    tell each kind of change apart."""
    with open(HEADER) as f:
        text = f.read()
    base = layout_of(text)

    def edit(old, new):
        if old not in text:
            sys.exit(f"layout self-test: '{old}' is not in the header any more")
        return text.replace(old, new, 1)

    # A field inserted after struct_size, into the 4 padding bytes before ctx.
    vt = text.index("typedef struct snp_id_store_vtable {")
    hole = text.index("uint32_t struct_size;", vt) + len("uint32_t struct_size;")
    # (what, edited header, a break expected, something to record expected)
    cases = [
        ("unchanged", text, False, False),
        ("a field appended to a struct_size struct",
         edit("} snp_client_stats;", "uint32_t appended;\n} snp_client_stats;"), False, True),
        ("a field widened (the others move)",
         edit("int32_t level;\n    /**\n     * Subscriptions",
              "int64_t level;\n    /**\n     * Subscriptions"), True, False),
        ("a field appended to snp_event (no struct_size)",
         edit("} snp_event;", "int32_t appended;\n} snp_event;"), True, False),
        ("a field inserted into a padding hole (nothing moves)",
         text[:hole] + "\n    int32_t inserted;" + text[hole:], True, False),
        ("a field renamed",
         edit("uint64_t subscriptions;", "uint64_t subscription_count;"), False, True),
        ("a new struct",
         edit("typedef struct snp_uuid {",
              "typedef struct snp_new {\n    uint32_t struct_size;\n} snp_new;\n\n"
              "typedef struct snp_uuid {"), False, True),
    ]
    failed = 0
    for label, header, want_breaks, want_records in cases:
        breaks, records = compare(base, layout_of(header))
        ok = bool(breaks) == want_breaks and bool(records) == want_records
        failed += not ok
        print(f"layout self-test: {'ok  ' if ok else 'FAIL'} {label}: "
              f"{len(breaks)} break(s), {len(records)} to record")
        for line in breaks + records if not ok else []:
            print(f"    {line}")
    return 1 if failed else 0


def main():
    args = sys.argv[1:]
    if args not in ([], ["--update"], ["--print"], ["--self-test"]):
        sys.exit(__doc__)
    if args == ["--self-test"]:
        return self_test()
    with open(HEADER) as f:
        structs = header_structs(f.read())
    out = measure(structs, HEADER)
    if args == ["--print"]:
        sys.stdout.write(out)
        return 0
    now = parse(out)
    if args == ["--update"]:
        if now[0] != "LP64":
            sys.exit("layout: the table is for LP64 platforms; update it on one")
        with open(TABLE, "w") as f:
            f.write(TABLE_NOTE + out)
        print(f"layout: wrote {os.path.relpath(TABLE)} ({len(structs)} structs)")
        return 0
    with open(TABLE) as f:
        table = parse(f.read())
    if now[0] != table[0]:
        print(f"layout: skipped: abi/layout.txt is for {table[0]} platforms, this one is "
              f"{now[0]}")
        return 0
    breaks, to_record = compare(table, now)
    current, recorded = abi_versions()
    if breaks:
        if current > recorded:
            print(f"layout: ABI changes with SNP_ABI_VERSION raised to {current} (recorded "
                  f"{recorded}): rewrite the table (capi/abi/check_layout.py --update) and "
                  "abi/version.txt:")
        else:
            print(f"layout: ABI break without an ABI version bump (SNP_ABI_VERSION {current}): "
                  "a published field never moves or changes size; append new fields at the "
                  "end of a struct that starts with struct_size:")
        for line in breaks:
            print(f"  {line}")
    if to_record:
        print("layout: the header has layout the table does not record; if intended, "
              "update it with capi/abi/check_layout.py --update:")
        for line in to_record:
            print(f"  {line}")
    if breaks or to_record:
        return 1
    fields = sum(len(f) for _, _, f in now[1].values())
    print(f"layout: {len(now[1])} structs, {fields} fields, all as recorded in abi/layout.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
