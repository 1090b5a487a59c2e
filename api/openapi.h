/*
 * openapi.h - the admin API's OpenAPI description, docs/openapi.yaml,
 * compiled into the binary (by ops/embed-file) so that GET /openapi.yaml
 * needs no file beside it and always matches the routes it was built with.
 *
 * The bytes are the file's exactly, followed by a NUL that the length does
 * not count. Constant data: any thread may read it.
 */
#ifndef HB_API_OPENAPI_H
#define HB_API_OPENAPI_H

#include <stddef.h>

extern const char api_openapi_yaml[];
extern const size_t api_openapi_yaml_len;

#endif
