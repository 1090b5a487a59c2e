/*
 * hex.c - see hex.h.
 */
#include "lib/hex.h"

#include "lib/hb.h"

int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void hex_encode(char *out, const uint8_t *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int hex_decode(uint8_t *out, const char *in, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++)
        if (hex_value((unsigned char)in[i]) < 0)
            return HB_EINVAL;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(hex_value((unsigned char)in[2 * i]) << 4 |
                           hex_value((unsigned char)in[2 * i + 1]));
    return 0;
}
