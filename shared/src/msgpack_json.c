/*
 * Conversion between msgpack-c objects and jansson values, so that both
 * hub encodings share one value model.
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "msgpack_json.h"
#include "hub_codec_internal.h"


static int sr_msgpack_string_to_json(const msgpack_object_str *str,
    json_t **out, sr_error_t *err);
static int sr_msgpack_array_to_json(const msgpack_object_array *array,
    json_t **out, sr_error_t *err);
static int sr_msgpack_map_to_json(const msgpack_object_map *map,
    json_t **out, sr_error_t *err);
static int sr_msgpack_check_text(const char *s, size_t len, sr_error_t *err);
static const char *sr_msgpack_chars(const msgpack_object_str *str);
static int sr_msgpack_pack_object(msgpack_packer *pk, const json_t *object,
    sr_error_t *err);


/*
 * Design note: jansson validates UTF-8 inside json_stringn() but keeps
 * its validator private, and a NULL from json_stringn() cannot tell bad
 * input from a failed allocation; so strings are checked first with
 * sr_utf8_valid() (websocket.c), which tells the two apart.
 */


/* msgpack-c leaves ptr NULL for an empty string; jansson wants text */
static const char *
sr_msgpack_chars(const msgpack_object_str *str)
{
    return str->size ? str->ptr : "";
}


static int
sr_msgpack_check_text(const char *s, size_t len, sr_error_t *err)
{
    if (len == 0) {
        return SR_OK;
    }

    if (memchr(s, '\0', len) != NULL) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "string contains a NUL character");
    }

    if (!sr_utf8_valid((const unsigned char *) s, len)) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "string is not valid UTF-8");
    }

    return SR_OK;
}


int
sr_msgpack_pack_json(msgpack_packer *pk, const json_t *value,
    sr_error_t *err)
{
    int      rc;
    size_t   i, len;
    json_t  *child;

    switch (json_typeof(value)) {

    case JSON_OBJECT:
        return sr_msgpack_pack_object(pk, value, err);

    case JSON_ARRAY:
        rc = msgpack_pack_array(pk, json_array_size(value));

        for (i = 0; rc == 0 && i < json_array_size(value); i++) {
            child = json_array_get(value, i);
            rc = sr_msgpack_pack_json(pk, child, err);
        }

        break;

    case JSON_STRING:
        len = json_string_length(value);
        rc = msgpack_pack_str(pk, len);
        rc = rc ? rc : msgpack_pack_str_body(pk, json_string_value(value),
                                             len);
        break;

    case JSON_INTEGER:
        rc = msgpack_pack_int64(pk, json_integer_value(value));
        break;

    case JSON_REAL:
        rc = msgpack_pack_double(pk, json_real_value(value));
        break;

    case JSON_TRUE:
        rc = msgpack_pack_true(pk);
        break;

    case JSON_FALSE:
        rc = msgpack_pack_false(pk);
        break;

    default:
        rc = msgpack_pack_nil(pk);
    }

    if (rc != 0) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return SR_OK;
}


static int
sr_msgpack_pack_object(msgpack_packer *pk, const json_t *object,
    sr_error_t *err)
{
    int          rc;
    size_t       len;
    void        *it;
    const char  *key;

    rc = msgpack_pack_map(pk, json_object_size(object));

    for (it = json_object_iter((json_t *) object); rc == 0 && it;
         it = json_object_iter_next((json_t *) object, it))
    {
        key = json_object_iter_key(it);
        len = json_object_iter_key_len(it);

        rc = msgpack_pack_str(pk, len);
        rc = rc ? rc : msgpack_pack_str_body(pk, key, len);
        rc = rc ? rc : sr_msgpack_pack_json(pk, json_object_iter_value(it),
                                            err);
    }

    if (rc != 0) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return SR_OK;
}


int
sr_msgpack_to_json(const msgpack_object *obj, json_t **out, sr_error_t *err)
{
    *out = NULL;

    switch (obj->type) {

    case MSGPACK_OBJECT_NIL:
        *out = json_null();
        break;

    case MSGPACK_OBJECT_BOOLEAN:
        *out = json_boolean(obj->via.boolean);
        break;

    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (obj->via.u64 > INT64_MAX) {
            return sr_error_set(err, SR_ERR_UNSUPPORTED,
                                "integer above 2^63 - 1 has no JSON form");
        }

        *out = json_integer((json_int_t) obj->via.u64);
        break;

    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = json_integer((json_int_t) obj->via.i64);
        break;

    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(obj->via.f64)) {
            return sr_error_set(err, SR_ERR_UNSUPPORTED,
                                "NaN or infinite number has no JSON form");
        }

        *out = json_real(obj->via.f64);
        break;

    case MSGPACK_OBJECT_STR:
        return sr_msgpack_string_to_json(&obj->via.str, out, err);

    case MSGPACK_OBJECT_ARRAY:
        return sr_msgpack_array_to_json(&obj->via.array, out, err);

    case MSGPACK_OBJECT_MAP:
        return sr_msgpack_map_to_json(&obj->via.map, out, err);

    case MSGPACK_OBJECT_BIN:
        return sr_error_set(err, SR_ERR_UNSUPPORTED,
                            "binary value has no JSON form");

    default:
        return sr_error_set(err, SR_ERR_UNSUPPORTED,
                            "extension value has no JSON form");
    }

    if (*out == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return SR_OK;
}


static int
sr_msgpack_string_to_json(const msgpack_object_str *str, json_t **out,
    sr_error_t *err)
{
    int  rc;

    rc = sr_msgpack_check_text(str->ptr, str->size, err);
    if (rc != SR_OK) {
        return rc;
    }

    *out = json_stringn_nocheck(sr_msgpack_chars(str), str->size);
    if (*out == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return SR_OK;
}


static int
sr_msgpack_array_to_json(const msgpack_object_array *array, json_t **out,
    sr_error_t *err)
{
    int       rc;
    uint32_t  i;
    json_t   *result, *item;

    result = json_array();
    if (result == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    for (i = 0; i < array->size; i++) {
        rc = sr_msgpack_to_json(&array->ptr[i], &item, err);
        if (rc != SR_OK) {
            json_decref(result);
            return rc;
        }

        if (json_array_append_new(result, item) != 0) {
            json_decref(result);
            return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
        }
    }

    *out = result;

    return SR_OK;
}


static int
sr_msgpack_map_to_json(const msgpack_object_map *map, json_t **out,
    sr_error_t *err)
{
    int                       rc;
    uint32_t                  i;
    json_t                   *result, *value;
    const char               *key;
    const msgpack_object_kv  *kv;

    result = json_object();
    if (result == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    for (i = 0; i < map->size; i++) {
        kv = &map->ptr[i];

        if (kv->key.type != MSGPACK_OBJECT_STR) {
            rc = sr_error_set(err, SR_ERR_UNSUPPORTED,
                              "map key that is not a string has no JSON "
                              "form");
            goto failed;
        }

        key = sr_msgpack_chars(&kv->key.via.str);

        rc = sr_msgpack_check_text(key, kv->key.via.str.size, err);
        if (rc != SR_OK) {
            goto failed;
        }

        /* jansson would keep the last value; refuse the ambiguity */
        if (json_object_getn(result, key, kv->key.via.str.size)) {
            rc = sr_error_set(err, SR_ERR_PROTOCOL, "map has a duplicate key");
            goto failed;
        }

        rc = sr_msgpack_to_json(&kv->val, &value, err);
        if (rc != SR_OK) {
            goto failed;
        }

        if (json_object_setn_new_nocheck(result, key, kv->key.via.str.size,
                                         value) != 0)
        {
            rc = sr_error_set(err, SR_ERR_NOMEM, "out of memory");
            goto failed;
        }
    }

    *out = result;

    return SR_OK;

failed:

    json_decref(result);

    return rc;
}
