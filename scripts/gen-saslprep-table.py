#!/usr/bin/python3
"""Generate common/saslprep_table.h, the data behind common/saslprep.c (SASLprep, RFC 4013).

RFC 3454 (stringprep) fixes Unicode 3.2, so every table comes from Python's frozen copy of that
version, unicodedata.ucd_3_2_0, and from the standard library's stringprep module (the RFC 3454
tables, defined over ucd_3_2_0). Nothing is taken from another project's code.

Tables written:
  - NFKC data: the full compatibility decomposition of each code point that has one (Hangul
    syllables excluded: saslprep.c decomposes and composes them algorithmically), the non-zero
    canonical combining classes, and the canonical composition pairs that NFC may form (primary
    composites: composition exclusions, singletons and non-starter decompositions left out);
  - RFC 3454 B.1 (mapped to nothing) and C.1.2 (non-ASCII spaces, mapped to U+0020);
  - the prohibited output of RFC 4013 section 2.3 (C.1.2, C.2.1, C.2.2, C.3 to C.9);
  - D.1 (RandALCat) and D.2 (LCat) for the bidi check of RFC 3454 section 6.

Usage: gen-saslprep-table.py [OUTPUT]   (default: common/saslprep_table.h next to this script)
"""

import os
import stringprep
import sys
import unicodedata

UCD = unicodedata.ucd_3_2_0
MAX_CP = 0x110000
HANGUL_S_BASE, HANGUL_S_COUNT = 0xAC00, 11172


def code_points():
    for cp in range(MAX_CP):
        if not 0xD800 <= cp <= 0xDFFF:
            yield cp


def is_hangul_syllable(cp):
    return HANGUL_S_BASE <= cp < HANGUL_S_BASE + HANGUL_S_COUNT


def utf8_len(cp):
    return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4


def ranges(pred):
    """Sorted, merged [lo, hi] ranges of the code points (surrogates included) satisfying pred."""
    out = []
    for cp in range(MAX_CP):
        if not pred(cp):
            continue
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def recursive_nfkd(cp):
    """Full compatibility decomposition straight from the UnicodeData mappings, then reordered.
    Used to cross-check normalize('NFKD')."""
    d = UCD.decomposition(chr(cp))
    if not d:
        return [cp]
    parts = d.split()
    if parts[0].startswith('<'):
        parts = parts[1:]
    seq = []
    for p in parts:
        seq.extend(recursive_nfkd(int(p, 16)))
    return seq


def canonical_reorder(seq):
    seq = list(seq)
    i = 1
    while i < len(seq):
        cc = UCD.combining(chr(seq[i]))
        j = i
        while cc and j > 0 and UCD.combining(chr(seq[j - 1])) > cc:
            seq[j - 1], seq[j] = seq[j], seq[j - 1]
            j -= 1
        i += 1
    return seq


# Unicode 4.0 corrected these five CJK compatibility decompositions (NormalizationCorrections.txt).
# ucd_3_2_0.normalize keeps the Unicode 3.2 mappings, as stringprep requires, while
# ucd_3_2_0.decomposition reports the corrected ones, so the cross-check skips them.
CORRECTED_AFTER_3_2 = {0x2F868, 0x2F874, 0x2F91F, 0x2F95F, 0x2F9BF}


def decomposition_table():
    entries = []  # (cp, [code points])
    for cp in code_points():
        if is_hangul_syllable(cp):
            continue
        d = [ord(c) for c in UCD.normalize('NFKD', chr(cp))]
        if d == [cp]:
            continue
        assert cp in CORRECTED_AFTER_3_2 or d == canonical_reorder(recursive_nfkd(cp)), hex(cp)
        entries.append((cp, d))
    return entries


def composition_pairs():
    pairs = []
    for cp in code_points():
        d = UCD.decomposition(chr(cp))
        if not d or d.startswith('<'):
            continue
        parts = [int(p, 16) for p in d.split()]
        if len(parts) != 2:
            continue  # singletons never recompose
        # A primary composite is what NFC leaves alone; composition exclusions and non-starter
        # decompositions come out decomposed.
        if UCD.normalize('NFC', chr(cp)) != chr(cp):
            continue
        assert UCD.combining(chr(parts[0])) == 0, hex(cp)
        assert UCD.combining(chr(cp)) == 0, hex(cp)
        pairs.append((parts[0], parts[1], cp))
    pairs.sort()
    return pairs


def combining_classes():
    out = []  # [lo, hi, ccc]
    for cp in code_points():
        cc = UCD.combining(chr(cp))
        if not cc:
            continue
        if out and out[-1][1] == cp - 1 and out[-1][2] == cc:
            out[-1][1] = cp
        else:
            out.append([cp, cp, cc])
    return out


def in_table(fn):
    return lambda cp: not 0xD800 <= cp <= 0xDFFF and fn(chr(cp))


def prohibited(cp):
    # RFC 4013 section 2.3. Surrogate code points (C.5) never get here: the UTF-8 decoder rejects
    # them, but they are listed so the table is the whole of C.5.
    if 0xD800 <= cp <= 0xDFFF:
        return True
    c = chr(cp)
    return (stringprep.in_table_c12(c) or stringprep.in_table_c21(c) or
            stringprep.in_table_c22(c) or stringprep.in_table_c3(c) or
            stringprep.in_table_c4(c) or stringprep.in_table_c6(c) or
            stringprep.in_table_c7(c) or stringprep.in_table_c8(c) or
            stringprep.in_table_c9(c))


def sanity_checks(tables):
    """Spot checks against ranges printed in RFC 3454, in case the stdlib ever drifts."""
    b1, c12, proh, d1, d2 = (tables[k] for k in ('b1', 'c12', 'prohibited', 'd1', 'd2'))
    assert b1 == [[0xAD, 0xAD], [0x34F, 0x34F], [0x1806, 0x1806], [0x180B, 0x180D],
                  [0x200B, 0x200D], [0x2060, 0x2060], [0xFE00, 0xFE0F], [0xFEFF, 0xFEFF]], b1
    assert c12 == [[0xA0, 0xA0], [0x1680, 0x1680], [0x2000, 0x200B], [0x202F, 0x202F],
                   [0x205F, 0x205F], [0x3000, 0x3000]], c12

    def covered(tbl, cp):
        return any(lo <= cp <= hi for lo, hi in tbl)
    for cp in (0x00, 0x1F, 0x7F, 0x80, 0x9F, 0x6DD, 0x70F, 0x180E, 0x200C, 0x200D, 0x2028,
               0x2029, 0x2060, 0x2063, 0x206A, 0x206F, 0xFEFF, 0xFFF9, 0xFFFC, 0x1D173, 0x1D17A,
               0xE000, 0xF8FF, 0xF0000, 0xFFFFD, 0x100000, 0x10FFFD, 0xFDD0, 0xFDEF, 0xFFFE,
               0x10FFFF, 0xD800, 0xDFFF, 0xFFFD, 0x2FF0, 0x2FFB, 0x340, 0x341, 0x200E, 0x200F,
               0x202A, 0x202E, 0xE0001, 0xE0020, 0xE007F, 0x3000, 0xA0):
        assert covered(proh, cp), hex(cp)
    for cp in (0x20, 0x41, 0x7E, 0xAA, 0x2168, 0x30DE, 0x1D400, 0xE0000, 0xE0002, 0xFDF0):
        assert not covered(proh, cp), hex(cp)
    for cp in (0x5BE, 0x5D0, 0x5EA, 0x627, 0x6FE, 0xFB1D, 0xFDFC, 0xFEFC):
        assert covered(d1, cp) and not covered(d2, cp), hex(cp)
    for cp in (0x41, 0x5A, 0x61, 0xAA, 0x30DE, 0x10300):
        assert covered(d2, cp) and not covered(d1, cp), hex(cp)


HEADER = '''/* saslprep_table.h - GENERATED FILE, do not edit: run scripts/gen-saslprep-table.py.
 *
 * Unicode %s data (Python %s unicodedata.ucd_3_2_0 and the stringprep module; RFC 3454 fixes
 * Unicode 3.2) for common/saslprep.c: NFKC decomposition, combining classes and composition pairs,
 * and the RFC 3454 tables SASLprep (RFC 4013) uses. Included by saslprep.c only.
 */
#ifndef UTURN_SASLPREP_TABLE_H
#define UTURN_SASLPREP_TABLE_H

#include <stdint.h>

#define SASLPREP_UNICODE_VERSION "%s"
/* Longest full compatibility decomposition of one code point (Hangul syllables: 3). */
#define SASLPREP_DECOMP_MAX %d
/* Most NFKD code points produced per byte of UTF-8 input. */
#define SASLPREP_EXPAND_MAX %d

typedef struct {
    uint32_t lo, hi;
} saslprep_range_t;

typedef struct {
    uint32_t lo, hi, ccc;
} saslprep_ccc_range_t;

typedef struct {
    uint32_t first, second, composite;
} saslprep_pair_t;
'''


def fmt_array(ctype, name, items, per_line_width=100):
    lines = ['static const %s %s[%d] = {' % (ctype, name, len(items))]
    line = '   '
    for it in items:
        piece = ' ' + it + ','
        if len(line) + len(piece) > per_line_width:
            lines.append(line)
            line = '   '
        line += piece
    if line.strip():
        lines.append(line)
    lines.append('};')
    return '\n'.join(lines)


def hx(v):
    return '0x%X' % v


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(
        os.path.join(here, '..', 'common', 'saslprep_table.h'))
    decomp = decomposition_table()
    pairs = composition_pairs()
    ccc = combining_classes()
    tables = {
        'b1': ranges(in_table(stringprep.in_table_b1)),
        'c12': ranges(in_table(stringprep.in_table_c12)),
        'prohibited': ranges(prohibited),
        'd1': ranges(in_table(stringprep.in_table_d1)),
        'd2': ranges(in_table(stringprep.in_table_d2)),
    }
    sanity_checks(tables)

    # One pool of code points; each decomposition is a slice of it (identical or contained
    # sequences share storage). Index entries pack offset << 5 | length.
    pool = ''
    index = []
    max_len = 0
    expand = 1  # NFKD code points per UTF-8 input byte, worst case, so saslprep.c can size buffers
    for cp, d in decomp:
        s = ''.join(chr(x) for x in d)
        off = pool.find(s)
        if off < 0:
            off = len(pool)
            pool += s
        assert len(d) < 32
        index.append(off << 5 | len(d))
        max_len = max(max_len, len(d))
        expand = max(expand, -(-len(d) // utf8_len(cp)))
    assert len(pool) < (1 << 27)

    ver = '%d.%d' % sys.version_info[:2]
    parts = []
    parts.append(HEADER % (UCD.unidata_version, ver, UCD.unidata_version, max(max_len, 3),
                           max(expand, 1)))

    parts.append('/* Full compatibility decompositions (NFKD of one code point): code points,'
                 ' sorted;\n * index entries (offset into the pool << 5 | length); the pool. */')
    parts.append(fmt_array('uint32_t', 'saslprep_decomp_cp', [hx(cp) for cp, _ in decomp]))
    parts.append(fmt_array('uint32_t', 'saslprep_decomp_idx', [hx(v) for v in index]))
    parts.append(fmt_array('uint32_t', 'saslprep_decomp_pool', [hx(ord(c)) for c in pool]))
    parts.append('\n/* Non-zero canonical combining classes, sorted ranges. */')
    parts.append(fmt_array('saslprep_ccc_range_t', 'saslprep_ccc',
                           ['{%s, %s, %d}' % (hx(lo), hx(hi), cc) for lo, hi, cc in ccc]))
    parts.append('\n/* Canonical composition: primary composites, sorted by (first, second). */')
    parts.append(fmt_array('saslprep_pair_t', 'saslprep_comp',
                           ['{%s, %s, %s}' % (hx(a), hx(b), hx(c)) for a, b, c in pairs]))
    comments = {
        'b1': 'RFC 3454 B.1: commonly mapped to nothing.',
        'c12': 'RFC 3454 C.1.2: non-ASCII space characters (mapped to U+0020 by RFC 4013 2.1).',
        'prohibited': 'RFC 4013 2.3: C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9.',
        'd1': 'RFC 3454 D.1: characters with bidi property R or AL (RandALCat).',
        'd2': 'RFC 3454 D.2: characters with bidi property L (LCat).',
    }
    for key in ('b1', 'c12', 'prohibited', 'd1', 'd2'):
        parts.append('\n/* %s */' % comments[key])
        parts.append(fmt_array('saslprep_range_t', 'saslprep_' + key,
                               ['{%s, %s}' % (hx(lo), hx(hi)) for lo, hi in tables[key]]))
    parts.append('\n#endif\n')

    text = '\n'.join(parts)
    with open(out_path, 'w', encoding='ascii') as f:
        f.write(text)
    print('%s: %d bytes; %d decompositions (pool %d), %d ccc ranges, %d pairs, '
          'prohibited %d, d1 %d, d2 %d ranges' %
          (out_path, len(text), len(decomp), len(pool), len(ccc), len(pairs),
           len(tables['prohibited']), len(tables['d1']), len(tables['d2'])))


if __name__ == '__main__':
    main()
