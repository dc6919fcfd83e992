/* openssl/ssl.h - poison (see server/poison/README): base/ and turn/ find this header before the
 * system's. */
#error                                                                                             \
    "the engine (server/turn) and base (server/base) must not include <openssl/ssl.h>: TLS belongs to net/; the engine sees whole messages (libcrypto's hashes are fine)"
