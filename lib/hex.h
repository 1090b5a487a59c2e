/*
 * hex.h - hexadecimal digits, for signatures, keys and checksums.
 */
#ifndef HB_HEX_H
#define HB_HEX_H

#include <stddef.h>
#include <stdint.h>

/* The value of one hex digit of either case, or -1. */
int hex_value(int c);

/* Writes 2 * n lowercase hex digits and a NUL into out. */
void hex_encode(char *out, const uint8_t *in, size_t n);

/* Reads 2 * n hex digits of either case from in into out; 0 or HB_EINVAL.
 * out is written only when every digit is valid. */
int hex_decode(uint8_t *out, const char *in, size_t n);

#endif
