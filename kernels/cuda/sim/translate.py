#!/usr/bin/env python3
"""translate.py — a .cu source as C++ for the CUDA simulator (kernels/cuda/sim): `translate.py IN.cu OUT.cpp`.

Only what g++ cannot parse is rewritten, in place, on the same lines (a `#line` directive keeps every
__FILE__/__LINE__, compiler message and fault report on the .cu's own lines):
  - `k<<<grid, block[, shmem[, stream]]>>>(args)`  ->
        `::qasim::launcher_for((k), "k", __FILE__, __LINE__, grid, block[, shmem[, stream]])(args)`
  - function-scope `__shared__ T x[N]...;`  ->  a reference to the block's storage for x
        (`::qasim::shared_var`: per block, poisoned when the block starts; bounds known to -fsanitize=bounds)
  - `extern __shared__ T x[];`  ->  `T *const x = ...::qasim::dynamic_shared(align);`
  - `__launch_bounds__(n, ...) k(...) { ... }`  ->  the same, followed by a registration of n for k
        (a launch with more threads per block fails as on the GPU)
Everything else (__global__, __device__, intrinsics, types) is defined by kernels/cuda/sim/include/.
Comments, string and character literals are never touched. The translation is a pure function of the
input text (no clang, no preprocessor run)."""
import os
import re
import sys


def mask(text):
    """text with comments and literal contents blanked (newlines kept), and a flag per line: directive"""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = ' '
            i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if text[k] != '\n':
                    out[k] = ' '
            i = j
        elif c == '"' or (c == "'" and not (i > 0 and text[i - 1].isalnum() and i + 1 < n and text[i + 1].isalnum())):
            j = i + 1
            while j < n and text[j] != c and text[j] != '\n':
                j += 2 if text[j] == '\\' else 1
            for k in range(i + 1, min(j, n)):
                out[k] = ' '
            i = j + 1
        else:
            i += 1
    return ''.join(out)


def directive_lines(masked):
    """set of line indexes that belong to preprocessor directives (with continuations)"""
    lines = masked.split('\n')
    res, cont = set(), False
    for idx, ln in enumerate(lines):
        if cont or ln.lstrip().startswith('#'):
            res.add(idx)
            cont = ln.rstrip().endswith('\\')
        else:
            cont = False
    return res


def depth_at(masked):
    """brace depth before each character (directive lines do not count)"""
    dl = directive_lines(masked)
    depth, line, res = 0, 0, [0] * (len(masked) + 1)
    for i, c in enumerate(masked):
        res[i] = depth
        if c == '\n':
            line += 1
        elif line not in dl:
            if c == '{':
                depth += 1
            elif c == '}':
                depth -= 1
    res[len(masked)] = depth
    return res


def close_of(masked, i, open_c, close_c):
    """index of the bracket closing the one at i"""
    d = 0
    for j in range(i, len(masked)):
        if masked[j] == open_c:
            d += 1
        elif masked[j] == close_c:
            d -= 1
            if d == 0:
                return j
    return -1


ALIGN_RE = re.compile(r'__align__\s*\(\s*(\d+)\s*\)')
CALLEE_RE = re.compile(r'((?:::\s*)?[A-Za-z_]\w*(?:\s*::\s*[A-Za-z_]\w*)*(?:\s*<[^<>;{}]*(?:<[^<>;{}]*>[^<>;{}]*)*>)?)\s*$')


def fail(path, text, pos, msg):
    line = text.count('\n', 0, pos) + 1
    sys.exit('%s:%d: translate.py: %s' % (path, line, msg))


def shared_decl(decl, path, text, pos):
    """`static char key; T (&x)[N] = *reinterpret_cast<T (*)[N]>(shared_var(&key, sizeof(T[N]), align));` for
    each declarator of `T x[N], y[M]`; None when the form is not one the rewrite handles"""
    align = None
    m = ALIGN_RE.search(decl)
    if m:
        align = m.group(1)
        decl = ALIGN_RE.sub(' ', decl)
    decl = ' '.join(decl.split())
    if '=' in decl or '(' in decl:
        return None
    parts = [p.strip() for p in decl.split(',')]
    m = re.match(r'^(.*?[\w>\s\*&])\s*\b([A-Za-z_]\w*)\s*((?:\[[^\]]+\]\s*)*)$', parts[0])
    if not m:
        return None
    typ = m.group(1).strip()
    decls = [(m.group(2), m.group(3).replace(' ', ''))]
    for p in parts[1:]:
        m2 = re.match(r'^([A-Za-z_]\w*)\s*((?:\[[^\]]+\]\s*)*)$', p)
        if not m2:
            return None
        decls.append((m2.group(1), m2.group(2).replace(' ', '')))
    out = []
    for name, dims in decls:
        al = 'alignof(%s)' % typ if not align else '(%s > alignof(%s) ? %s : alignof(%s))' % (align, typ, align, typ)
        out.append('static char qasim_shk_%s; %s (&%s)%s = *reinterpret_cast<%s (*)%s>(::qasim::shared_var('
                   '&qasim_shk_%s, sizeof(%s%s), %s));' % (name, typ, name, dims, typ, dims, name, typ, dims, al))
    return ' '.join(out)


def translate(text, path):
    masked = mask(text)
    depth = depth_at(masked)
    edits = []  # (start, end, replacement)

    # kernel launches
    for m in re.finditer(r'<<<', masked):
        s = m.start()
        cm = CALLEE_RE.search(masked[:s])
        if not cm:
            fail(path, text, s, 'a launch <<<...>>> without a kernel name before it')
        e = masked.find('>>>', s + 3)
        if e < 0:
            fail(path, text, s, '<<< without a matching >>>')
        callee = text[cm.start(1):cm.end(1)]
        name = ' '.join(callee.split())
        cfg = text[s + 3:e]
        edits.append((cm.start(1), e + 3, '::qasim::launcher_for((%s), "%s", __FILE__, __LINE__, %s)' %
                      (name, name, ' '.join(cfg.split()))))

    # dynamic shared memory
    for m in re.finditer(r'\bextern\s+__shared__\b([^;]*);', masked):
        body = text[m.start(1):m.end(1)]
        align = None
        am = ALIGN_RE.search(body)
        if am:
            align = am.group(1)
            body = ALIGN_RE.sub(' ', body)
        dm = re.match(r'^\s*(.*?[\w>\s\*&])\s*\b([A-Za-z_]\w*)\s*\[\s*\]\s*$', body, re.S)
        if not dm:
            fail(path, text, m.start(), 'extern __shared__ in a form this translator does not handle: %s' % body.strip())
        typ, name = ' '.join(dm.group(1).split()), dm.group(2)
        al = align or 'alignof(%s)' % typ
        edits.append((m.start(), m.end(), '%s *const %s = reinterpret_cast<%s *>(::qasim::dynamic_shared(%s));' %
                      (typ, name, typ, al)))

    # function-scope static shared memory
    for m in re.finditer(r'(?<![\w])(?:static\s+)?__shared__\b([^;]*);', masked):
        if depth[m.start()] <= 0 or re.search(r'\bextern\s+$', masked[max(0, m.start() - 40):m.start()]):
            continue
        rep = shared_decl(text[m.start(1):m.end(1)], path, text, m.start())
        if rep is None:
            continue  # left to the header's fallback: plain static storage
        edits.append((m.start(), m.end(), rep))

    # __launch_bounds__: register the bound after the kernel's body
    for m in re.finditer(r'__launch_bounds__\s*\(', masked):
        po = m.end() - 1
        pc = close_of(masked, po, '(', ')')
        km = re.match(r'\s*([A-Za-z_]\w*)\s*\(', masked[pc + 1:]) if pc > 0 else None
        if not km:
            continue
        name = km.group(1)
        head = masked[max(0, masked.rfind(';', 0, m.start()), masked.rfind('}', 0, m.start())):m.start()]
        if re.search(r'\btemplate\b', head):
            continue
        ap = pc + 1 + km.end() - 1
        apc = close_of(masked, ap, '(', ')')
        bm = re.match(r'\s*\{', masked[apc + 1:]) if apc > 0 else None
        if not bm:
            continue
        bo = apc + 1 + bm.end() - 1
        bc = close_of(masked, bo, '{', '}')
        if bc < 0:
            continue
        args = ' '.join(text[po + 1:pc].split())
        edits.append((bc + 1, bc + 1, ' static const ::qasim::launch_bounds_reg qasim_lb_%s(reinterpret_cast<const '
                      'void *>(&%s), "%s", %s);' % (name, name, name, args)))

    # every rewrite keeps the line count of what it replaces
    edits = [(s, e, r + '\n' * (text.count('\n', s, e) - r.count('\n'))) for s, e, r in edits]
    edits.sort(key=lambda x: x[0])
    for a, b in zip(edits, edits[1:]):
        if a[1] > b[0]:
            fail(path, text, b[0], 'overlapping rewrites')
    out = text
    for s, e, r in reversed(edits):
        out = out[:s] + r + out[e:]
    assert out.count('\n') == text.count('\n'), 'line count changed'
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: translate.py IN.cu OUT.cpp')
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding='utf-8') as f:
        text = f.read()
    body = translate(text, src)
    header = ('// Generated from %s by kernels/cuda/sim/translate.py: do not edit.\n'
              '#include <cuda_runtime.h>\n#line 1 "%s"\n' % (src, src))
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with open(dst, 'w', encoding='utf-8') as f:
        f.write(header + body)


if __name__ == '__main__':
    main()
