/* openssl/ssl.h - poison for base/ and turn/ (server/poison/README). */
#error "the engine (server/turn, server/base) must not include <openssl/ssl.h>: TLS is net/"
