/* stun_msg.c - one-pass, bounds-checked STUN decoder and typed attribute getters.
 *
 * RFC 8489 §5 and §6.3 (header and the basic receive checks), §14 (TLVs, padding that is counted in
 * the message length but never inspected: RFC 5769 pads with 0x20), §9 and §14.5-14.7 (what may
 * follow MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT), §14.1-14.2 (address and
 * XOR-address forms), RFC 8656 §18 and RFC 5780 §7 (TURN and NAT-discovery attribute formats). The
 * decoder indexes attributes into the caller's stun_msg_t and never copies or allocates; every
 * getter re-checks the length it needs, because a decoded message is still attacker data.
 */
#include <string.h>

#include <netinet/in.h>

#include "crc32.h"
#include "stun_msg.h"

/* RFC 8489 §14.7: the CRC is XORed with this so that a FINGERPRINT never matches the CRC of an
 * application protocol that also appends one. */
#define STUN_FINGERPRINT_XOR 0x5354554Eu

/* Where an attribute stands relative to the integrity attributes (RFC 8489 §14.5-14.6). */
enum stun_msg_phase {
    PHASE_BODY,  /* before any integrity attribute: everything is indexed */
    PHASE_MI,    /* after MESSAGE-INTEGRITY: only MI-SHA256 and FINGERPRINT count */
    PHASE_MI256, /* after MESSAGE-INTEGRITY-SHA256: only FINGERPRINT counts */
};

static uint16_t get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int stun_msg_is_stun(const uint8_t *buf, size_t len)
{
    /* RFC 7983 §7 gives STUN the first bytes 0..3 only (methods >= 0x100 are reserved for that). */
    return len >= STUN_HEADER_LEN && buf[0] <= 3 && get32(buf + 4) == STUN_MAGIC_COOKIE;
}

static int check_header(const uint8_t *buf, size_t len)
{
    if (len < STUN_HEADER_LEN)
        return STUN_MSG_E_SHORT;
    /* The two zero bits are what tell STUN apart from ChannelData and RTP on a shared port. */
    if (buf[0] & 0xC0)
        return STUN_MSG_E_NOT_STUN;
    if (get32(buf + 4) != STUN_MAGIC_COOKIE)
        return STUN_MSG_E_COOKIE;
    if (len > STUN_MAX_MSG_LEN)
        return STUN_MSG_E_TOO_BIG;
    size_t hlen = get16(buf + 2);
    if ((hlen & 3) != 0 || hlen != len - STUN_HEADER_LEN)
        return STUN_MSG_E_LENGTH;
    return 0;
}

/* FINGERPRINT at `off` (attribute header): it must be the last attribute and match the CRC of
 * everything before it. The header length already ends at the end of FINGERPRINT (it is last),
 * which is exactly the length RFC 8489 §14.7 says the CRC covers, so no adjustment is needed. */
static int check_fingerprint(const uint8_t *buf, size_t len, size_t off, size_t alen)
{
    if (alen != 4 || off + 8 != len)
        return STUN_MSG_E_FINGERPRINT;
    if ((crc32_compute(buf, off) ^ STUN_FINGERPRINT_XOR) != get32(buf + off + 4))
        return STUN_MSG_E_FINGERPRINT;
    return 0;
}

/* Decide whether the attribute at `off` is indexed, given where we are relative to the integrity
 * attributes; updates `phase`. Returns 1 to index it, 0 to skip it, or a negative decode error. */
static int classify_attr(stun_msg_t *msg, enum stun_msg_phase *phase, uint16_t type, size_t alen)
{
    switch (type) {
    case STUN_ATTR_MESSAGE_INTEGRITY:
        /* Two MIs would let an attacker choose which one a careless verifier checks. */
        if (msg->mi_idx >= 0)
            return STUN_MSG_E_INTEGRITY;
        if (*phase == PHASE_MI256)
            return 0; /* RFC 8489 §14.6: ignored after MI-SHA256 */
        if (alen != 20)
            return STUN_MSG_E_INTEGRITY;
        msg->mi_idx = msg->nattrs;
        *phase = PHASE_MI;
        return 1;
    case STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
        if (msg->mi256_idx >= 0)
            return STUN_MSG_E_INTEGRITY;
        /* RFC 8489 §14.6: 16..32 bytes in steps of 4. */
        if (alen < 16 || alen > 32 || (alen & 3) != 0)
            return STUN_MSG_E_INTEGRITY;
        msg->mi256_idx = msg->nattrs;
        *phase = PHASE_MI256;
        return 1;
    case STUN_ATTR_FINGERPRINT:
        msg->fp_idx = msg->nattrs;
        return 1;
    default:
        /* RFC 8489 §14.5-14.6: attributes after the integrity ones are not protected, so they must
         * never reach processing. */
        return *phase == PHASE_BODY;
    }
}

static int decode_attrs(stun_msg_t *msg)
{
    const uint8_t *buf = msg->buf;
    size_t len = msg->len;
    enum stun_msg_phase phase = PHASE_BODY;

    for (size_t off = STUN_HEADER_LEN; off < len;) {
        if (len - off < 4)
            return STUN_MSG_E_ATTR_OVERRUN;
        uint16_t type = get16(buf + off);
        size_t alen = get16(buf + off + 2);
        /* The padding of the last attribute must fit too: the message length is a multiple of 4,
         * so a value that ends inside the final word but whose padding does not fit is corrupt. */
        size_t padded = (alen + 3) & ~(size_t)3;
        if (padded > len - off - 4)
            return STUN_MSG_E_ATTR_OVERRUN;
        /* check_fingerprint insists FINGERPRINT ends the message (RFC 8489 §14.7), so nothing
         * can follow an indexed one. */
        if (type == STUN_ATTR_FINGERPRINT) {
            int rc = check_fingerprint(buf, len, off, alen);
            if (rc < 0)
                return rc;
        }
        int rc = classify_attr(msg, &phase, type, alen);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            if (msg->nattrs >= STUN_MAX_ATTRS)
                return STUN_MSG_E_TOO_MANY;
            stun_attr_t *a = &msg->attrs[msg->nattrs++];
            a->type = type;
            a->len = (uint16_t)alen;
            a->offset = (uint16_t)(off + 4); /* < STUN_MAX_MSG_LEN, so it fits */
        }
        off += 4 + padded;
    }
    return 0;
}

int stun_msg_decode(const uint8_t *buf, size_t len, stun_msg_t *msg)
{
    int rc = check_header(buf, len);
    if (rc < 0)
        return rc;
    msg->buf = buf;
    msg->len = len;
    msg->type = get16(buf);
    msg->method = stun_type_method(msg->type);
    msg->cls = stun_type_class(msg->type);
    msg->tid = buf + 8;
    msg->nattrs = 0;
    msg->mi_idx = -1;
    msg->mi256_idx = -1;
    msg->fp_idx = -1;
    return decode_attrs(msg);
}

const char *stun_msg_strerror(int err)
{
    switch (err) {
    case STUN_MSG_OK:
        return "ok";
    case STUN_MSG_E_SHORT:
        return "shorter than a STUN header";
    case STUN_MSG_E_NOT_STUN:
        return "first two bits not 00";
    case STUN_MSG_E_COOKIE:
        return "bad magic cookie";
    case STUN_MSG_E_LENGTH:
        return "bad message length";
    case STUN_MSG_E_ATTR_OVERRUN:
        return "attribute runs past the end";
    case STUN_MSG_E_TOO_MANY:
        return "too many attributes";
    case STUN_MSG_E_FINGERPRINT:
        return "bad FINGERPRINT";
    case STUN_MSG_E_INTEGRITY:
        return "bad or duplicated MESSAGE-INTEGRITY";
    case STUN_MSG_E_TOO_BIG:
        return "message too big";
    default:
        return "unknown error";
    }
}

const stun_attr_t *stun_msg_find(const stun_msg_t *msg, uint16_t type)
{
    for (int i = 0; i < msg->nattrs; i++) {
        if (msg->attrs[i].type == type)
            return &msg->attrs[i];
    }
    return NULL;
}

static int type_in(uint16_t type, const uint16_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i] == type)
            return 1;
    }
    return 0;
}

int stun_msg_unknown_required(const stun_msg_t *msg, const uint16_t *known, size_t nknown,
                              uint16_t *out, size_t cap)
{
    size_t found = 0;

    for (int i = 0; i < msg->nattrs; i++) {
        uint16_t t = msg->attrs[i].type;
        if (t >= 0x8000 || type_in(t, known, nknown))
            continue;
        /* A repeated unknown attribute is listed once in UNKNOWN-ATTRIBUTES. */
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = msg->attrs[j].type == t;
        if (seen)
            continue;
        if (found < cap)
            out[found] = t;
        found++;
    }
    return (int)found;
}

/* Shared by the plain and XOR address forms (RFC 8489 §14.1-14.2): family byte, port, address. The
 * first byte is reserved: senders zero it, receivers ignore it. */
static int get_addr(const stun_msg_t *msg, const stun_attr_t *a, int use_xor,
                    struct sockaddr_storage *out)
{
    const uint8_t *v = stun_attr_value(msg, a);
    uint8_t mask[16];
    uint16_t port;

    if (a->len < 4)
        return -1;
    port = get16(v + 2);
    /* XOR with the cookie, then (IPv6 only) the transaction id that follows it in the header. */
    memcpy(mask, msg->buf + 4, 16);
    if (use_xor)
        port ^= (uint16_t)(STUN_MAGIC_COOKIE >> 16);
    memset(out, 0, sizeof(*out));
    if (v[1] == STUN_FAMILY_IPV4 && a->len == 8) {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;
        uint8_t *ip = (uint8_t *)&sin->sin_addr;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        for (int i = 0; i < 4; i++)
            ip[i] = (uint8_t)(v[4 + i] ^ (use_xor ? mask[i] : 0));
        return 0;
    }
    if (v[1] == STUN_FAMILY_IPV6 && a->len == 20) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
        uint8_t *ip = (uint8_t *)&sin6->sin6_addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        for (int i = 0; i < 16; i++)
            ip[i] = (uint8_t)(v[4 + i] ^ (use_xor ? mask[i] : 0));
        return 0;
    }
    return -1;
}

int stun_attr_get_xor_addr(const stun_msg_t *msg, const stun_attr_t *a,
                           struct sockaddr_storage *out)
{
    return get_addr(msg, a, 1, out);
}

int stun_attr_get_addr(const stun_msg_t *msg, const stun_attr_t *a, struct sockaddr_storage *out)
{
    return get_addr(msg, a, 0, out);
}

int stun_attr_get_u32(const stun_msg_t *msg, const stun_attr_t *a, uint32_t *out)
{
    if (a->len != 4)
        return -1;
    *out = get32(stun_attr_value(msg, a));
    return 0;
}

int stun_attr_get_channel(const stun_msg_t *msg, const stun_attr_t *a, uint16_t *out)
{
    /* RFC 8656 §18.1: number(16) + RFFU(16); the RFFU bits are ignored on receipt. */
    if (a->len != 4)
        return -1;
    *out = get16(stun_attr_value(msg, a));
    return 0;
}

/* REQUESTED-TRANSPORT and the address-family attributes: one byte then three RFFU bytes. */
static int get_first_byte_of_word(const stun_msg_t *msg, const stun_attr_t *a, uint8_t *out)
{
    if (a->len != 4)
        return -1;
    *out = stun_attr_value(msg, a)[0];
    return 0;
}

int stun_attr_get_transport(const stun_msg_t *msg, const stun_attr_t *a, uint8_t *out)
{
    return get_first_byte_of_word(msg, a, out);
}

int stun_attr_get_family(const stun_msg_t *msg, const stun_attr_t *a, uint8_t *out)
{
    return get_first_byte_of_word(msg, a, out);
}

int stun_attr_get_even_port(const stun_msg_t *msg, const stun_attr_t *a, int *reserve)
{
    /* RFC 8656 §18.7: only the top bit means anything; pion sends 0xFF for R=1, so mask. */
    if (a->len < 1)
        return -1;
    *reserve = (stun_attr_value(msg, a)[0] & 0x80) != 0;
    return 0;
}

int stun_attr_get_token(const stun_msg_t *msg, const stun_attr_t *a, uint64_t *out)
{
    const uint8_t *v = stun_attr_value(msg, a);

    if (a->len != 8)
        return -1;
    *out = ((uint64_t)get32(v) << 32) | get32(v + 4);
    return 0;
}

int stun_attr_get_response_port(const stun_msg_t *msg, const stun_attr_t *a, uint16_t *out)
{
    /* RFC 5780 §7.5 shows a 16-bit port followed by 16 bits of padding; implementations disagree
     * on whether that padding is counted in the length, so accept both 2 and 4. */
    if (a->len != 2 && a->len != 4)
        return -1;
    *out = get16(stun_attr_value(msg, a));
    return 0;
}

int stun_attr_get_error(const stun_msg_t *msg, const stun_attr_t *a, int *code,
                        const uint8_t **reason, size_t *reason_len)
{
    const uint8_t *v = stun_attr_value(msg, a);

    if (a->len < 4)
        return -1;
    /* RFC 8489 §14.8: class 3..6 in the low 3 bits of byte 2, number 0..99 in byte 3. */
    int cls = v[2] & 0x07, num = v[3];
    if (cls < 3 || cls > 6 || num > 99)
        return -1;
    *code = cls * 100 + num;
    *reason = v + 4;
    *reason_len = a->len - 4u;
    return 0;
}

int stun_attr_get_password_alg(const stun_msg_t *msg, const stun_attr_t *a, uint16_t *alg)
{
    const uint8_t *v = stun_attr_value(msg, a);

    if (a->len < 4)
        return -1;
    /* RFC 8489 §14.12: alg(16), params length(16), params padded to 4. Accept the params' padding
     * counted in the attribute length or left to the attribute padding. */
    size_t plen = get16(v + 2);
    if (4 + plen > a->len || a->len > 4 + ((plen + 3) & ~(size_t)3))
        return -1;
    *alg = get16(v);
    return 0;
}

int stun_attr_get_password_algs(const stun_msg_t *msg, const stun_attr_t *a, uint16_t *algs,
                                size_t cap, size_t *n)
{
    const uint8_t *v = stun_attr_value(msg, a);
    size_t off = 0, count = 0;

    /* RFC 8489 §14.11: a list of {alg(16), params length(16), params padded to 4}. The last entry's
     * params padding may be left to the attribute padding. */
    while (off < a->len) {
        if (a->len - off < 4)
            return -1;
        size_t plen = get16(v + off + 2);
        if (plen > a->len - off - 4)
            return -1;
        if (count < cap)
            algs[count] = get16(v + off);
        count++;
        off += 4 + ((plen + 3) & ~(size_t)3);
    }
    *n = count;
    return 0;
}

int stun_attr_get_unknown(const stun_msg_t *msg, const stun_attr_t *a, uint16_t *types, size_t cap,
                          size_t *n)
{
    const uint8_t *v = stun_attr_value(msg, a);

    if (a->len & 1)
        return -1;
    *n = a->len / 2u;
    for (size_t i = 0; i < *n && i < cap; i++)
        types[i] = get16(v + 2 * i);
    return 0;
}

int stun_attr_get_icmp(const stun_msg_t *msg, const stun_attr_t *a, uint8_t *type, uint8_t *code,
                       uint32_t *data)
{
    const uint8_t *v = stun_attr_value(msg, a);

    /* RFC 8656 §18.13: reserved(16), type, code, error data(32); byte-aligned split (see the fact
     * sheet §16: implementations disagree, the byte-aligned reading is the common one). */
    if (a->len != 8)
        return -1;
    *type = v[2];
    *code = v[3];
    *data = get32(v + 4);
    return 0;
}
