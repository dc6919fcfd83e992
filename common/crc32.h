/* crc32.h - CRC-32 (ITU-T V.42, the zlib polynomial) for the STUN FINGERPRINT (RFC 8489 §14.7). */
#ifndef UTURN_CRC32_H
#define UTURN_CRC32_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32_compute(const uint8_t *buf, size_t len);

#endif
