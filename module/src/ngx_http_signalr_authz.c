/*
 * What a verified token is allowed: the roles and scopes a location
 * requires (signalr_jwt_require_roles, signalr_jwt_require_scopes), read
 * from configurable claims, and the end of a connection whose token
 * expires (signalr_jwt_close_expired).
 */

#include "ngx_http_signalr_module.h"


/* the longest wait for an expiry: the timer is re-armed after it */
#define NGX_HTTP_SIGNALR_EXPIRY_STEP  86400

#define NGX_HTTP_SIGNALR_TOKEN_EXPIRED  "token expired"


static json_t *ngx_http_signalr_authz_claim(json_t *claims,
    ngx_str_t *path);
static ngx_uint_t ngx_http_signalr_authz_has(json_t *value,
    ngx_str_t *want, ngx_uint_t words);
static ngx_uint_t ngx_http_signalr_authz_granted(json_t *claims,
    ngx_array_t *names, ngx_str_t *want, ngx_uint_t words);
static char *ngx_http_signalr_authz_default(ngx_conf_t *cf,
    ngx_array_t **list, const char **names);


/*
 * NGX_OK when claims grant every required role and scope; NGX_DECLINED
 * with *reason a short text for the 403 answer otherwise.
 */

ngx_int_t
ngx_http_signalr_authz_check(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, json_t *claims, const char **reason)
{
    ngx_str_t   *want;
    ngx_uint_t   i;

    if (slcf->jwt_roles) {
        want = slcf->jwt_roles->elts;

        for (i = 0; i < slcf->jwt_roles->nelts; i++) {
            if (!ngx_http_signalr_authz_granted(claims, slcf->jwt_role_claims,
                                                &want[i], 0))
            {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "signalr token lacks the role \"%V\"",
                              &want[i]);
                *reason = "missing role";
                return NGX_DECLINED;
            }
        }
    }

    if (slcf->jwt_scopes) {
        want = slcf->jwt_scopes->elts;

        for (i = 0; i < slcf->jwt_scopes->nelts; i++) {
            if (!ngx_http_signalr_authz_granted(claims,
                                                slcf->jwt_scope_claims,
                                                &want[i], 1))
            {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "signalr token lacks the scope \"%V\"",
                              &want[i]);
                *reason = "missing scope";
                return NGX_DECLINED;
            }
        }
    }

    return NGX_OK;
}


/* any of the claims named may grant want */

static ngx_uint_t
ngx_http_signalr_authz_granted(json_t *claims, ngx_array_t *names,
    ngx_str_t *want, ngx_uint_t words)
{
    json_t      *value;
    ngx_str_t   *name;
    ngx_uint_t   i;

    if (claims == NULL || names == NULL) {
        return 0;
    }

    name = names->elts;

    for (i = 0; i < names->nelts; i++) {
        value = ngx_http_signalr_authz_claim(claims, &name[i]);

        if (value && ngx_http_signalr_authz_has(value, want, words)) {
            return 1;
        }
    }

    return 0;
}


/*
 * A claim by its dotted path: "realm_access.roles" is the member
 * "roles" of the object "realm_access", as Keycloak nests it.
 */

static json_t *
ngx_http_signalr_authz_claim(json_t *claims, ngx_str_t *path)
{
    u_char  *p, *last, *dot;
    json_t  *value;

    value = claims;
    p = path->data;
    last = p + path->len;

    while (p < last) {
        dot = ngx_strlchr(p, last, '.');

        if (dot == NULL) {
            dot = last;
        }

        if (!json_is_object(value)) {
            return NULL;
        }

        value = json_object_getn(value, (const char *) p, dot - p);

        if (value == NULL) {
            return NULL;
        }

        p = dot + 1;
    }

    return value;
}


/*
 * Whether value is want, or an array holding it; with words, a string
 * also counts as space separated words ("chatting_read chatting_write").
 */

static ngx_uint_t
ngx_http_signalr_authz_has(json_t *value, ngx_str_t *want, ngx_uint_t words)
{
    u_char      *p, *last, *start;
    size_t       i, len;
    json_t      *item;

    if (json_is_array(value)) {
        json_array_foreach(value, i, item) {
            if (json_is_string(item)
                && ngx_http_signalr_authz_has(item, want, words))
            {
                return 1;
            }
        }

        return 0;
    }

    if (!json_is_string(value)) {
        return 0;
    }

    p = (u_char *) json_string_value(value);
    len = json_string_length(value);
    last = p + len;

    if (!words) {
        return len == want->len && ngx_strncmp(p, want->data, len) == 0;
    }

    while (p < last) {
        while (p < last && *p == ' ') {
            p++;
        }

        start = p;

        while (p < last && *p != ' ') {
            p++;
        }

        if ((size_t) (p - start) == want->len
            && ngx_strncmp(start, want->data, want->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


char *
ngx_http_signalr_authz_merge(ngx_conf_t *cf,
    ngx_http_signalr_loc_conf_t *prev, ngx_http_signalr_loc_conf_t *conf)
{
    static const char  *roles[] = { "roles", "realm_access.roles", NULL };
    static const char  *scopes[] = { "scope", NULL };

    ngx_conf_merge_ptr_value(conf->jwt_roles, prev->jwt_roles, NULL);
    ngx_conf_merge_ptr_value(conf->jwt_scopes, prev->jwt_scopes, NULL);
    ngx_conf_merge_ptr_value(conf->jwt_role_claims, prev->jwt_role_claims,
                             NGX_CONF_UNSET_PTR);
    ngx_conf_merge_ptr_value(conf->jwt_scope_claims,
                             prev->jwt_scope_claims, NGX_CONF_UNSET_PTR);
    ngx_conf_merge_value(conf->jwt_close_expired, prev->jwt_close_expired,
                         1);

    if (ngx_http_signalr_authz_default(cf, &conf->jwt_role_claims, roles)
        != NGX_CONF_OK
        || ngx_http_signalr_authz_default(cf, &conf->jwt_scope_claims,
                                          scopes)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_signalr_authz_default(ngx_conf_t *cf, ngx_array_t **list,
    const char **names)
{
    ngx_str_t  *s;

    if (*list != NGX_CONF_UNSET_PTR) {
        return NGX_CONF_OK;
    }

    *list = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
    if (*list == NULL) {
        return NGX_CONF_ERROR;
    }

    for ( /* void */ ; *names; names++) {
        s = ngx_array_push(*list);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        s->data = (u_char *) *names;
        s->len = ngx_strlen(*names);
    }

    return NGX_CONF_OK;
}


/*
 * The time until the connection's token expires (exp plus the leeway the
 * token was accepted with), bounded by a day; NGX_TIMER_INFINITE when no
 * expiry applies. The session timer waits for the first of this, the
 * keep-alive and the client timeout: a deadline kept in the session
 * rather than a timer of its own.
 */

ngx_msec_t
ngx_http_signalr_expiry_left(ngx_http_signalr_session_t *s)
{
    time_t  left;

    if (!s->conf->jwt_close_expired || s->expires == 0) {
        return NGX_TIMER_INFINITE;
    }

    left = s->expires + s->conf->jwt_leeway - ngx_time();

    if (left <= 0) {
        return 0;
    }

    if (left > NGX_HTTP_SIGNALR_EXPIRY_STEP) {
        left = NGX_HTTP_SIGNALR_EXPIRY_STEP;
    }

    return (ngx_msec_t) left * 1000;
}


/*
 * From the session timer: ends a connection whose token has expired,
 * with a Close that allows reconnecting (a client reconnecting asks its
 * accessTokenFactory for a fresh token). NGX_DONE when it did.
 */

ngx_int_t
ngx_http_signalr_expiry_check(ngx_http_signalr_session_t *s)
{
    if (ngx_http_signalr_expiry_left(s) != 0) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, s->log, 0,
                  "signalr connection \"%s\": token expired, closing",
                  s->id);

    ngx_http_signalr_session_end(s, NGX_HTTP_SIGNALR_TOKEN_EXPIRED, 1,
                                 SR_WS_CLOSE_NORMAL);

    return NGX_DONE;
}
