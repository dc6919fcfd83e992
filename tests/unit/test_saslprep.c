/* test_saslprep.c - unit tests for stun_auth_saslprep (common/saslprep.c): the RFC 4013 §3
 * examples, the RFC 5769 §2.4 long-term-credential username and password, each mapping,
 * normalisation and prohibition rule of RFC 4013 / RFC 3454 (Unicode 3.2), the bidi rule, strict
 * UTF-8 decoding, and the length limits.
 */
#include "stun_auth.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "unit.h"
#include "util.h"

struct vector {
    const char *name;
    const char *in;
    size_t inlen;     /* 0: strlen(in) */
    const char *want; /* NULL: must fail with -1 */
};

/* Valid strings are u8 literals with universal character names, named as in the RFCs; \u takes
 * exactly four hex digits, so u8"\u06271" is U+0627 then '1'. Invalid UTF-8 is spelled in bytes. */
static const struct vector vectors[] = {
    /* RFC 4013 §3 */
    {"4013 soft hyphen", u8"I\u00ADX", 0, "IX"},
    {"4013 no transformation", "user", 0, "user"},
    {"4013 case preserved", "USER", 0, "USER"},
    {"4013 ordinal a", u8"\u00AA", 0, "a"},
    {"4013 roman nine", u8"\u2168", 0, "IX"},
    {"4013 BEL prohibited", "\x07", 0, NULL},
    {"4013 bidi alef one", u8"\u06271", 0, NULL},

    /* RFC 5769 §2.4 */
    {"5769 password", u8"The\u00ADM\u00AAtr\u2168", 0, "TheMatrIX"},
    {"5769 username", u8"\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9", 0,
     u8"\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9"},
    {"5769 realm", "example.org", 0, "example.org"},

    /* Mapping (RFC 4013 §2.1): B.1 to nothing, C.1.2 to U+0020 */
    {"NBSP to space", u8"a\u00A0b", 0, "a b"},
    {"ideographic space", u8"a\u3000b", 0, "a b"},
    {"en quad", u8"\u2000x", 0, " x"},
    {"ZWSP in B.1 and C.1.2: removed", u8"a\u200Bb", 0, "ab"},
    {"BOM removed", u8"\uFEFFpass", 0, "pass"},
    {"variation selector removed", u8"x\uFE0F", 0, "x"},
    {"ZWJ removed", u8"a\u200Db", 0, "ab"},
    {"only mapped-out characters", u8"\u00AD\u2060", 0, ""},
    {"empty", "", 0, ""},

    /* NFKC with Unicode 3.2 (RFC 3454 §4) */
    {"e + acute composes", u8"e\u0301", 0, u8"\u00E9"},
    {"precomposed stays", u8"\u00E9", 0, u8"\u00E9"},
    {"mark reordering", u8"a\u0307\u0323", 0, u8"\u1EA1\u0307"},
    {"reordered, nothing composes", u8"q\u0307\u0323", 0, u8"q\u0323\u0307"},
    {"blocked by same class", u8"a\u0301\u0301", 0, u8"\u00E1\u0301"},
    {"second mark composes past lower class", u8"o\u031B\u0301", 0, u8"\u1EDB"},
    {"angstrom sign singleton", u8"\u212B", 0, u8"\u00C5"},
    {"ohm sign singleton", u8"\u2126", 0, u8"\u03A9"},
    {"fi ligature", u8"\uFB01", 0, "fi"},
    {"fullwidth", u8"\uFF21\uFF22\uFF23", 0, "ABC"},
    {"superscript two", u8"x\u00B2", 0, "x2"},
    {"math bold A", u8"\U0001D400", 0, "A"},
    {"composition exclusion qa", u8"\u0958", 0, u8"\u0915\u093C"},
    {"non-starter decomposition", u8"a\u0344", 0, u8"\u00E4\u0301"},
    {"hangul jamo compose LVT", u8"\u1100\u1161\u11A8", 0, u8"\uAC01"},
    {"hangul syllable LV + T", u8"\uAC00\u11A8", 0, u8"\uAC01"},
    {"hangul syllable stays", u8"\uD7A3", 0, u8"\uD7A3"},
    {"halfwidth katakana", u8"\uFF76\uFF9E", 0, u8"\u30AC"},
    {"CJK compat 2F868: Unicode 3.2 mapping", u8"\U0002F868", 0, u8"\U0002136A"},
    {"pair unknown in 3.2 not composed", u8"\u1B05\u1B35", 0, u8"\u1B05\u1B35"},
    {"unassigned allowed", u8"a\u0378", 0, u8"a\u0378"},
    {"arabic ligature FDFA", u8"\uFDFA", 0,
     u8"\u0635\u0644\u0649 \u0627\u0644\u0644\u0647 \u0639\u0644\u064A\u0647 "
     u8"\u0648\u0633\u0644\u0645"},

    /* Prohibited output (RFC 4013 §2.3) */
    {"NUL", "a\0b", 3, NULL},
    {"DEL", "a\x7F", 0, NULL},
    {"C.2.2 U+0080", "\xC2\x80", 0, NULL},
    {"C.2.2 line separator", u8"a\u2028", 0, NULL},
    {"C.2.2 arabic end of ayah", u8"\u06DD", 0, NULL},
    {"C.3 private use", u8"\uE000", 0, NULL},
    {"C.3 plane 16 private use", u8"\U0010FFFD", 0, NULL},
    {"C.4 noncharacter FDD0", u8"\uFDD0", 0, NULL},
    {"C.4 noncharacter FFFF", u8"\uFFFF", 0, NULL},
    {"C.6 replacement char", u8"\uFFFD", 0, NULL},
    {"C.7 ideographic description", u8"\u2FF0", 0, NULL},
    {"C.8 LRM", u8"a\u200E", 0, NULL},
    {"C.8 deprecated 206A", u8"\u206A", 0, NULL},
    {"C.9 language tag", u8"\U000E0001", 0, NULL},
    {"C.9 tag character", u8"\U000E0041", 0, NULL},

    /* Bidi (RFC 3454 §6) */
    {"RandAL only", u8"\u05D0\u05D1", 0, u8"\u05D0\u05D1"},
    {"RandAL with digit inside", u8"\u06271\u0628", 0, u8"\u06271\u0628"},
    {"RandAL with LCat", u8"\u0627a\u0628", 0, NULL},
    {"RandAL not first", u8"1\u0627", 0, NULL},
    {"RandAL then space last", u8"\u05D0 ", 0, NULL},

    /* Strict UTF-8 */
    {"overlong NUL", "\xC0\x80", 0, NULL},
    {"overlong slash 2 bytes", "\xC1\xAF", 0, NULL},
    {"overlong 3 bytes", "\xE0\x80\xAF", 0, NULL},
    {"overlong 4 bytes", "\xF0\x80\x80\xAF", 0, NULL},
    {"surrogate", "\xED\xA0\x80", 0, NULL},
    {"surrogate pair as CESU-8", "\xED\xA0\xBD\xED\xB8\x80", 0, NULL},
    {"above U+10FFFF", "\xF4\x90\x80\x80", 0, NULL},
    {"F5 lead byte", "\xF5\x80\x80\x80", 0, NULL},
    {"FF byte", "a\xFF", 0, NULL},
    {"lone continuation", "\x80", 0, NULL},
    {"truncated 2-byte", "a\xC3", 0, NULL},
    {"truncated 3-byte", "\xE3\x83", 0, NULL},
    {"truncated 4-byte", "\xF0\x9D\x90", 0, NULL},
    {"bad continuation", "\xC3(", 0, NULL},
    {"U+10FFFF noncharacter", u8"\U0010FFFF", 0, NULL},
};

UNIT_TEST(vectors)
{
    for (size_t i = 0; i < ARRAY_SIZE(vectors); i++) {
        const struct vector *v = &vectors[i];
        size_t len = v->inlen ? v->inlen : strlen(v->in);
        char out[256];
        int r;

        memset(out, 'Z', sizeof(out));
        r = stun_auth_saslprep(v->in, len, out, sizeof(out));
        if (v->want) {
            if (r < 0)
                fprintf(stderr, "vector \"%s\" failed unexpectedly\n", v->name);
            CHECK_INT(r, strlen(v->want));
            CHECK_STR(r >= 0 ? out : NULL, v->want);
        } else {
            if (r >= 0)
                fprintf(stderr, "vector \"%s\" should have failed\n", v->name);
            CHECK_INT(r, -1);
        }
    }
}

/* The output and its NUL must fit in cap; the fast and the full path agree on that. */
UNIT_TEST(capacity)
{
    char out[64];

    CHECK_INT(stun_auth_saslprep("user", 4, out, 4), -1);
    CHECK_INT(stun_auth_saslprep("user", 4, out, 5), 4);
    CHECK_STR(out, "user");
    CHECK_INT(stun_auth_saslprep("I\xC2\xADX", 4, out, 2), -1);
    CHECK_INT(stun_auth_saslprep("I\xC2\xADX", 4, out, 3), 2);
    CHECK_STR(out, "IX");
    CHECK_INT(stun_auth_saslprep("\xEF\xB7\xBA", 3, out, 33), -1);
    CHECK_INT(stun_auth_saslprep("\xEF\xB7\xBA", 3, out, 34), 33);
    CHECK_INT(stun_auth_saslprep("\xC3\xA9", 2, out, 2), -1);
    CHECK_INT(stun_auth_saslprep("\xC3\xA9", 2, out, 3), 2);
    CHECK_INT(stun_auth_saslprep("", 0, out, 1), 0);
    CHECK_STR(out, "");
    CHECK_INT(stun_auth_saslprep("", 0, out, 0), -1);
    CHECK_INT(stun_auth_saslprep(NULL, 0, out, sizeof(out)), 0);
    CHECK_INT(stun_auth_saslprep(NULL, 1, out, sizeof(out)), -1);
    CHECK_INT(stun_auth_saslprep("user", 4, NULL, 16), -1);
}

/* Inputs up to 1024 bytes are accepted; the worst expansion (U+FDFA, 3 bytes to 18 code points)
 * and the longest run of combining marks still fit the fixed buffers. */
UNIT_TEST(limits)
{
    static char in[1100];
    static char out[16000];
    static char want[16000];
    int r;

    memset(in, 'a', sizeof(in));
    CHECK_INT(stun_auth_saslprep(in, 1024, out, sizeof(out)), 1024);
    CHECK_MEM(out, in, 1024);
    CHECK_INT(stun_auth_saslprep(in, 1025, out, sizeof(out)), -1);
    in[0] = '\xC2', in[1] = '\xAA'; /* the slow path has the same limit */
    CHECK_INT(stun_auth_saslprep(in, 1025, out, sizeof(out)), -1);
    CHECK_INT(stun_auth_saslprep(in, 1024, out, sizeof(out)), 1023);

    for (size_t i = 0; i < 341; i++)
        memcpy(in + 3 * i, "\xEF\xB7\xBA", 3);
    r = stun_auth_saslprep(in, 1023, out, sizeof(out));
    CHECK_INT(r, 341 * 33);
    CHECK_INT(stun_auth_saslprep(in, 1023, out, 341 * 33), -1);

    /* 'a' and 511 acute accents: the first composes, the rest are blocked by it. */
    in[0] = 'a';
    for (size_t i = 0; i < 511; i++)
        memcpy(in + 1 + 2 * i, "\xCC\x81", 2);
    memcpy(want, "\xC3\xA1", 2);
    memcpy(want + 2, in + 3, 2 * 510);
    r = stun_auth_saslprep(in, 1023, out, sizeof(out));
    CHECK_INT(r, 2 + 2 * 510);
    CHECK_MEM(out, want, 2 + 2 * 510);

    /* 'a', 510 x U+0344 (it decomposes to two class-230 marks) and a dot below (class 220): the
     * reorder moves the dot below across 1020 marks to 'a', which it then composes with. */
    in[0] = 'a';
    for (size_t i = 0; i < 510; i++)
        memcpy(in + 1 + 2 * i, "\xCD\x84", 2);
    memcpy(in + 1021, "\xCC\xA3", 2);
    memcpy(want, "\xE1\xBA\xA1", 3);
    for (size_t i = 0; i < 510; i++)
        memcpy(want + 3 + 4 * i, "\xCC\x88\xCC\x81", 4);
    r = stun_auth_saslprep(in, 1023, out, sizeof(out));
    CHECK_INT(r, 3 + 4 * 510);
    CHECK_MEM(out, want, 3 + 4 * 510);
}

UNIT_MAIN("test_saslprep")
