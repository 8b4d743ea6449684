/*
 * signalr_jwt: an access-phase check of a bearer token, usable in any
 * location (hubs, and REST locations in front of proxy_pass). The user
 * and claims it finds are kept in the request's module context, for
 * $signalr_user and for the daemon.
 */

#include "ngx_http_signalr_module.h"


static ngx_int_t ngx_http_signalr_auth_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_signalr_redact_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_signalr_auth_forbid(ngx_http_request_t *r,
    const char *reason);
static ngx_int_t ngx_http_signalr_auth_keep(ngx_http_request_t *r,
    ngx_http_signalr_ctx_t *ctx, sr_jwt_identity_t *id);
static ngx_int_t ngx_http_signalr_auth_token(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, ngx_str_t *token);
static ngx_int_t ngx_http_signalr_auth_reject(ngx_http_request_t *r,
    const char *reason);
static char *ngx_http_signalr_auth_load_keys(ngx_conf_t *cf,
    ngx_http_signalr_loc_conf_t *conf);
static void ngx_http_signalr_auth_keys_cleanup(void *data);


ngx_int_t
ngx_http_signalr_auth_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_signalr_auth_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_signalr_redact_handler;

    return NGX_OK;
}


/*
 * nginx writes the request line into every error log line about a
 * request, and into $request: with an access_token argument that would
 * be a bearer token in the log. As soon as the request is read, the
 * request line is replaced by a copy whose token values read
 * "[redacted]"; $args and ngx_http_arg() still see the real query.
 */

static ngx_int_t
ngx_http_signalr_redact_handler(ngx_http_request_t *r)
{
    u_char  *p, *last, *end, *dst, *line, *name;

    static ngx_str_t  key = ngx_string("access_token=");
    static ngx_str_t  mark = ngx_string("[redacted]");

    if (r->args.len < key.len || r->request_line.len == 0
        || ngx_strlcasestrn(r->args.data, r->args.data + r->args.len,
                            key.data, key.len - 1)
           == NULL)
    {
        return NGX_DECLINED;
    }

    p = r->request_line.data;
    last = p + r->request_line.len;

    /* the arguments are a part of the request line, as nginx parsed it */
    if (r->args.data < p || r->args.data + r->args.len > last) {
        return NGX_DECLINED;
    }

    /* each token value shrinks to at least the mark */
    line = ngx_pnalloc(r->pool, r->request_line.len
                                + (r->args.len / key.len + 1) * mark.len);
    if (line == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    dst = ngx_cpymem(line, p, r->args.data - p);

    p = r->args.data;
    end = p + r->args.len;

    while (p < end) {
        name = p;

        while (p < end && *p != '&') {
            p++;
        }

        if ((size_t) (p - name) >= key.len
            && ngx_strncasecmp(name, key.data, key.len) == 0)
        {
            dst = ngx_cpymem(dst, name, key.len);
            dst = ngx_cpymem(dst, mark.data, mark.len);

        } else {
            dst = ngx_cpymem(dst, name, p - name);
        }

        if (p < end) {
            *dst++ = *p++;
        }
    }

    dst = ngx_cpymem(dst, end, last - end);

    r->request_line.data = line;
    r->request_line.len = dst - line;

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_signalr_auth_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_str_t                     token;
    sr_error_t                    err;
    const char                   *reason;
    sr_jwt_identity_t             id;
    ngx_http_signalr_ctx_t       *ctx;
    ngx_http_signalr_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    if (!slcf->jwt) {
        return NGX_DECLINED;
    }

    /* a preflight carries no credentials; the hub answers it itself */
    if (slcf->hub.len && ngx_http_signalr_is_preflight(r)) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_signalr_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->authenticated) {
        return NGX_OK;
    }

    rc = ngx_http_signalr_auth_token(r, slcf, &token);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_signalr_auth_reject(r, "missing token");
    }

    ngx_memzero(&id, sizeof(sr_jwt_identity_t));
    sr_error_clear(&err);

    if (sr_jwt_verify(slcf->jwt_keys, &slcf->jwt_policy,
                      (const char *) token.data, token.len, ngx_time(),
                      &id, &err)
        != SR_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "signalr token refused: %s", err.str);
        return ngx_http_signalr_auth_reject(r, err.str);
    }

    rc = ngx_http_signalr_auth_keep(r, ctx, &id);

    sr_jwt_identity_clear(&id);

    if (rc == NGX_DECLINED) {
        return ngx_http_signalr_auth_reject(r, "unusable user claim");
    }

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_signalr_authz_check(r, slcf, ctx->claims, &reason)
        != NGX_OK)
    {
        return ngx_http_signalr_auth_forbid(r, reason);
    }

    return NGX_OK;
}


/*
 * A valid token without the rights the location requires: 403, and the
 * request is not authenticated, so that no later step takes its user.
 */

static ngx_int_t
ngx_http_signalr_auth_forbid(ngx_http_request_t *r, const char *reason)
{
    ngx_int_t                rc;
    ngx_http_signalr_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_signalr_module);

    if (ctx) {
        ctx->authenticated = 0;
    }

    rc = ngx_http_signalr_send_problem(r, NGX_HTTP_FORBIDDEN, reason);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/* moves the verified identity into the request context */

static ngx_int_t
ngx_http_signalr_auth_keep(ngx_http_request_t *r,
    ngx_http_signalr_ctx_t *ctx, sr_jwt_identity_t *id)
{
    size_t  len;

    len = id->user ? ngx_strlen(id->user) : 0;

    if (len == 0 || len > NGX_HTTP_SIGNALR_MAX_USER) {
        return NGX_DECLINED;
    }

    ctx->user.data = ngx_pnalloc(r->pool, len);
    if (ctx->user.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->user.data, id->user, len);
    ctx->user.len = len;

    /* the context's cleanup releases the claims from now on */
    ctx->claims = id->claims;
    id->claims = NULL;
    ctx->expires = id->expires;
    ctx->authenticated = 1;

    return NGX_OK;
}


/*
 * Finds the token: "Authorization: Bearer", or on a hub location the
 * access_token argument, which browsers must use for WebSockets since
 * they cannot set headers there. NGX_DECLINED when there is none.
 */

static ngx_int_t
ngx_http_signalr_auth_token(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, ngx_str_t *token)
{
    u_char           *p, *last, *dst;
    ngx_str_t         arg;
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h) {
        p = h->value.data;
        last = p + h->value.len;

        if (h->value.len < 7
            || ngx_strncasecmp(p, (u_char *) "Bearer ", 7) != 0)
        {
            return NGX_DECLINED;
        }

        p += 7;

        while (p < last && *p == ' ') {
            p++;
        }

        while (last > p && last[-1] == ' ') {
            last--;
        }

        token->data = p;
        token->len = last - p;

        return token->len ? NGX_OK : NGX_DECLINED;
    }

    if (slcf->hub.len == 0
        || ngx_http_arg(r, (u_char *) "access_token", 12, &arg) != NGX_OK
        || arg.len == 0)
    {
        return NGX_DECLINED;
    }

    dst = ngx_pnalloc(r->pool, arg.len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    token->data = dst;
    p = arg.data;

    ngx_unescape_uri(&dst, &p, arg.len, 0);

    token->len = dst - token->data;

    return token->len ? NGX_OK : NGX_DECLINED;
}


/*
 * Sends the 401 problem answer from the access phase and finalizes the
 * request here, so that the body is ours rather than nginx's error page.
 */

static ngx_int_t
ngx_http_signalr_auth_reject(ngx_http_request_t *r, const char *reason)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    ngx_str_set(&h->value, "Bearer");

    r->headers_out.www_authenticate = h;

    rc = ngx_http_signalr_send_problem(r, NGX_HTTP_UNAUTHORIZED, reason);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


char *
ngx_http_signalr_auth_merge(ngx_conf_t *cf,
    ngx_http_signalr_loc_conf_t *prev, ngx_http_signalr_loc_conf_t *conf)
{
    ngx_str_t    *aud;
    ngx_uint_t    i;
    const char  **list;

    ngx_conf_merge_value(conf->jwt, prev->jwt, 0);
    ngx_conf_merge_ptr_value(conf->jwt_key_files, prev->jwt_key_files, NULL);
    ngx_conf_merge_str_value(conf->jwt_issuer, prev->jwt_issuer, "");
    ngx_conf_merge_ptr_value(conf->jwt_audiences, prev->jwt_audiences, NULL);
    ngx_conf_merge_sec_value(conf->jwt_leeway, prev->jwt_leeway, 30);
    ngx_conf_merge_str_value(conf->jwt_user_claim, prev->jwt_user_claim,
                             "sub");

    if (ngx_http_signalr_authz_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->jwt_key_files == prev->jwt_key_files && prev->jwt_keys) {
        conf->jwt_keys = prev->jwt_keys;

    } else if (conf->jwt_key_files) {
        if (ngx_http_signalr_auth_load_keys(cf, conf) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->jwt && conf->jwt_keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"signalr_jwt\" is on but no "
                           "\"signalr_jwt_key_file\" is given");
        return NGX_CONF_ERROR;
    }

    /* configuration strings are NUL-terminated by the parser */

    conf->jwt_policy.issuer = conf->jwt_issuer.len
                              ? (const char *) conf->jwt_issuer.data : NULL;
    conf->jwt_policy.leeway = (long) conf->jwt_leeway;
    conf->jwt_policy.user_claim = (const char *) conf->jwt_user_claim.data;
    conf->jwt_policy.audiences = NULL;
    conf->jwt_policy.audiences_n = 0;

    if (conf->jwt_audiences == NULL) {
        return NGX_CONF_OK;
    }

    list = ngx_palloc(cf->pool,
                      conf->jwt_audiences->nelts * sizeof(const char *));
    if (list == NULL) {
        return NGX_CONF_ERROR;
    }

    aud = conf->jwt_audiences->elts;

    for (i = 0; i < conf->jwt_audiences->nelts; i++) {
        list[i] = (const char *) aud[i].data;
    }

    conf->jwt_policy.audiences = list;
    conf->jwt_policy.audiences_n = conf->jwt_audiences->nelts;

    return NGX_CONF_OK;
}


static char *
ngx_http_signalr_auth_load_keys(ngx_conf_t *cf,
    ngx_http_signalr_loc_conf_t *conf)
{
    ngx_str_t           *file, name;
    ngx_uint_t           i;
    sr_error_t           err;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    conf->jwt_keys = sr_jwt_keys_new();
    if (conf->jwt_keys == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_signalr_auth_keys_cleanup;
    cln->data = conf->jwt_keys;

    file = conf->jwt_key_files->elts;

    for (i = 0; i < conf->jwt_key_files->nelts; i++) {
        name = file[i];

        if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        sr_error_clear(&err);

        if (sr_jwt_keys_load_file(conf->jwt_keys, (const char *) name.data,
                                  &err)
            != SR_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "signalr_jwt_key_file \"%V\": %s",
                               &name, err.str);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static void
ngx_http_signalr_auth_keys_cleanup(void *data)
{
    sr_jwt_keys_free(data);
}
