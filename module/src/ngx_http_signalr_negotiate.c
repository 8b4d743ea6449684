/*
 * POST <hub>/negotiate: hands out a connection id and token, records
 * them in the registry for the WebSocket that follows, and lists the
 * transports. Also the CORS answers of hub locations.
 */

#include "ngx_http_signalr_module.h"


static ngx_int_t ngx_http_signalr_negotiate(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf);
static ngx_int_t ngx_http_signalr_negotiate_args(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, sr_negotiate_response_t *res);
static ngx_int_t ngx_http_signalr_negotiate_register(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, sr_negotiate_response_t *res);
static ngx_int_t ngx_http_signalr_preflight(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf);
static ngx_int_t ngx_http_signalr_send_json(ngx_http_request_t *r,
    sr_buf_t *body);


ngx_int_t
ngx_http_signalr_negotiate_handler(ngx_http_request_t *r)
{
    ngx_str_t                     allow;
    ngx_http_signalr_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    if (r->method == NGX_HTTP_OPTIONS) {
        return ngx_http_signalr_preflight(r, slcf);
    }

    if (r->method != NGX_HTTP_POST) {
        ngx_str_set(&allow, "POST, OPTIONS");

        if (ngx_http_signalr_add_header(r, "Allow", &allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_signalr_send_problem(r, NGX_HTTP_NOT_ALLOWED,
                                             "negotiate takes POST");
    }

    return ngx_http_signalr_negotiate(r, slcf);
}


static ngx_int_t
ngx_http_signalr_negotiate(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf)
{
    ngx_int_t                rc;
    sr_buf_t                 body;
    sr_error_t               err;
    sr_negotiate_response_t  res;
    char                     id[SR_RANDOM_ID_LEN + 1];
    char                     token[SR_RANDOM_ID_LEN + 1];

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_memzero(&res, sizeof(sr_negotiate_response_t));

    if (ngx_http_signalr_negotiate_args(r, slcf, &res) != NGX_OK) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_BAD_REQUEST,
                                             "invalid negotiateVersion");
    }

    /* the official clients report a refused negotiate with its status */
    if (ngx_http_signalr_limits_negotiate(r, slcf) != NGX_OK) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                             "too many connections");
    }

    if (sr_random_id(id, &err) != SR_OK
        || sr_random_id(token, &err) != SR_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sr_random_id() failed: %s", err.str);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    res.connection_id = id;
    res.connection_token = token;

    rc = ngx_http_signalr_negotiate_register(r, slcf, &res);

    /* the refusal is the whole answer: nothing may follow it */
    if (rc == NGX_BUSY) {
        return ngx_http_signalr_send_problem(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "too many connections");
    }

    if (rc != NGX_OK) {
        return rc;
    }

    sr_buf_init(&body);

    if (sr_negotiate_write(&res, &body, &err) != SR_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sr_negotiate_write() failed: %s", err.str);
        sr_buf_free(&body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_signalr_send_json(r, &body);

    sr_buf_free(&body);

    return rc;
}


/* the version, transports and stateful reconnect of the answer */

static ngx_int_t
ngx_http_signalr_negotiate_args(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, sr_negotiate_response_t *res)
{
    ngx_str_t   value;
    sr_error_t  err;

    if (ngx_http_arg(r, (u_char *) "negotiateVersion", 16, &value)
        != NGX_OK)
    {
        ngx_str_null(&value);
    }

    if (sr_negotiate_version((const char *) value.data, value.len,
                             &res->version, &err)
        != SR_OK)
    {
        return NGX_ERROR;
    }

    res->transports = slcf->transports;

    /* as ASP.NET Core does, only a client that asks for it gets it */
    if (slcf->stateful_reconnect
        && ngx_http_arg(r, (u_char *) "useStatefulReconnect", 20, &value)
           == NGX_OK
        && value.len == 4
        && ngx_strncasecmp(value.data, (u_char *) "true", 4) == 0)
    {
        res->stateful_reconnect = 1;
    }

    return NGX_OK;
}


/*
 * Records the connection under the key its transport requests will
 * present: the token for negotiate version 1, the connection id for
 * version 0, whose first character the registry then chooses.
 * NGX_BUSY when the registry zone is full.
 */

static ngx_int_t
ngx_http_signalr_negotiate_register(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, sr_negotiate_response_t *res)
{
    ngx_int_t                      rc;
    ngx_str_t                      key, id, user;
    ngx_http_signalr_ctx_t        *ctx;
    ngx_http_signalr_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_signalr_module);

    ctx = ngx_http_signalr_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    id.data = (u_char *) res->connection_id;
    id.len = ngx_strlen(res->connection_id);

    key.data = (u_char *) (res->version >= 1 ? res->connection_token
                                             : res->connection_id);
    key.len = ngx_strlen(key.data);

    if (ctx->authenticated) {
        user = ctx->user;

    } else {
        ngx_str_null(&user);
    }

    /* the registry names its partition in the key's first character:
     * the answer below is written from the same buffers, after it */
    rc = ngx_http_signalr_registry_negotiate(smcf->registry_zone, &key, &id,
                                             &user, slcf->client_timeout);

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "signalr registry zone is full, "
                      "refusing to negotiate");
        return NGX_BUSY;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->connection_id.data = ngx_pstrdup(r->pool, &id);
    if (ctx->connection_id.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->connection_id.len = id.len;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "signalr negotiated connection \"%V\"", &id);

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_send_json(ngx_http_request_t *r, sr_buf_t *body)
{
    ngx_buf_t  *b;
    ngx_str_t   nocache;

    static ngx_str_t  type = ngx_string("application/json");

    b = ngx_create_temp_buf(r->pool, body->len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, body->data, body->len);

    ngx_str_set(&nocache, "no-store");

    if (ngx_http_signalr_add_header(r, "Cache-Control", &nocache) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_signalr_send_buffer(r, NGX_HTTP_OK, &type, b);
}


ngx_int_t
ngx_http_signalr_is_preflight(ngx_http_request_t *r)
{
    return r->method == NGX_HTTP_OPTIONS
           && ngx_http_signalr_find_header(r, "Origin", 6) != NULL
           && ngx_http_signalr_find_header(r,
                                           "Access-Control-Request-Method",
                                           29)
              != NULL;
}


/*
 * OPTIONS: a CORS preflight of an allowed origin gets the methods and
 * headers the official clients send; anything else only learns the
 * methods.
 */

static ngx_int_t
ngx_http_signalr_preflight(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf)
{
    ngx_int_t   rc;
    ngx_str_t   value;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_str_set(&value, "GET, POST, DELETE, OPTIONS");

    if (ngx_http_signalr_add_header(r, "Allow", &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_signalr_is_preflight(r)
        && slcf->cors_origins != NULL
        && ngx_http_signalr_cors_headers(r, slcf) == NGX_OK)
    {
        if (ngx_http_signalr_add_header(r, "Access-Control-Allow-Methods",
                                        &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&value, "Authorization, Content-Type, "
                            "X-Requested-With, X-SignalR-User-Agent");

        if (ngx_http_signalr_add_header(r, "Access-Control-Allow-Headers",
                                        &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&value, "600");

        if (ngx_http_signalr_add_header(r, "Access-Control-Max-Age", &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


/*
 * Adds the CORS answer headers when the request's Origin is allowed by
 * signalr_cors_origins: NGX_OK when added, NGX_DECLINED when not.
 * Credentials are allowed (the clients send cookies and Authorization),
 * so the origin is echoed rather than "*", which browsers refuse
 * together with credentials.
 */

ngx_int_t
ngx_http_signalr_cors_headers(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf)
{
    ngx_str_t        *allowed, value;
    ngx_uint_t        i, ok;
    ngx_table_elt_t  *origin;

    if (slcf->cors_origins == NULL) {
        return NGX_DECLINED;
    }

    origin = ngx_http_signalr_find_header(r, "Origin", 6);

    if (origin == NULL || origin->value.len == 0) {
        return NGX_DECLINED;
    }

    allowed = slcf->cors_origins->elts;
    ok = 0;

    for (i = 0; i < slcf->cors_origins->nelts; i++) {
        if ((allowed[i].len == 1 && allowed[i].data[0] == '*')
            || (allowed[i].len == origin->value.len
                && ngx_strncasecmp(allowed[i].data, origin->value.data,
                                   allowed[i].len)
                   == 0))
        {
            ok = 1;
            break;
        }
    }

    if (!ok) {
        return NGX_DECLINED;
    }

    if (ngx_http_signalr_add_header(r, "Access-Control-Allow-Origin",
                                    &origin->value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "true");

    if (ngx_http_signalr_add_header(r, "Access-Control-Allow-Credentials",
                                    &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "Origin");

    return ngx_http_signalr_add_header(r, "Vary", &value);
}
