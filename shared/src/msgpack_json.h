/*
 * Internal: conversion between MessagePack and jansson values, used by
 * the hub message codec and the IPC bodies. Not installed.
 */

#ifndef SIGNALR_MSGPACK_JSON_H
#define SIGNALR_MSGPACK_JSON_H

#include <jansson.h>
#include <msgpack.h>

#include <signalr/error.h>

/*
 * Packs value. Integers stay integers, reals become float64, objects
 * become maps with string keys. SR_OK or SR_ERR_NOMEM.
 */
int sr_msgpack_pack_json(msgpack_packer *pk, const json_t *value,
    sr_error_t *err);

/*
 * Converts obj to a new jansson value in *out (caller decrefs).
 * SR_ERR_UNSUPPORTED for bin, ext, non-string map keys and unsigned
 * integers above INT64_MAX; SR_ERR_PROTOCOL for strings that are not
 * valid UTF-8 or contain NUL.
 */
int sr_msgpack_to_json(const msgpack_object *obj, json_t **out,
    sr_error_t *err);

#endif /* SIGNALR_MSGPACK_JSON_H */
