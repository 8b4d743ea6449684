/*
 * ngx_http_signalr_module: directives, configuration, variables, the
 * content handler of hub locations and the small HTTP helpers the other
 * files share.
 */

#include "ngx_http_signalr_module.h"


static ngx_int_t ngx_http_signalr_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_signalr_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_signalr_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_signalr_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_signalr_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_signalr_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_signalr_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_signalr_daemon(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_signalr_hub(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_signalr_transports(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_signalr_str_list(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_signalr_init_process(ngx_cycle_t *cycle);
static void ngx_http_signalr_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_signalr_user_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_signalr_connection_id_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_signalr_redacted_args_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_signalr_ctx_cleanup(void *data);


static ngx_conf_num_bounds_t  ngx_http_signalr_leeway_bounds = {
    ngx_conf_check_num_bounds, 0, 86400
};

static ngx_conf_num_bounds_t  ngx_http_signalr_invocation_id_bounds = {
    ngx_conf_check_num_bounds, 1, NGX_HTTP_SIGNALR_MAX_INVOCATION_ID
};

static ngx_conf_num_bounds_t  ngx_http_signalr_arguments_bounds = {
    ngx_conf_check_num_bounds, 1, NGX_HTTP_SIGNALR_MAX_ARGUMENTS
};

/* marks the rate limits for ngx_http_signalr_limit() */
static ngx_uint_t  ngx_http_signalr_rate_limit = 1;


static ngx_command_t  ngx_http_signalr_commands[] = {

    { ngx_string("signalr_daemon"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_signalr_daemon,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("signalr_registry_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_signalr_main_conf_t, registry_size),
      NULL },

    { ngx_string("signalr_hub"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_signalr_hub,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("signalr_transports"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_signalr_transports,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("signalr_stateful_reconnect"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, stateful_reconnect),
      NULL },

    { ngx_string("signalr_stateful_reconnect_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, reconnect_buffer),
      NULL },

    { ngx_string("signalr_stateful_reconnect_window"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, reconnect_window),
      NULL },

    { ngx_string("signalr_keepalive_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, keepalive_interval),
      NULL },

    { ngx_string("signalr_client_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, client_timeout),
      NULL },

    { ngx_string("signalr_handshake_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, handshake_timeout),
      NULL },

    { ngx_string("signalr_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, max_message_size),
      NULL },

    { ngx_string("signalr_send_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, send_queue_size),
      NULL },

    { ngx_string("signalr_long_polling_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, poll_timeout),
      NULL },

    { ngx_string("signalr_disconnect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, disconnect_timeout),
      NULL },

    { ngx_string("signalr_cors_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_signalr_str_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, cors_origins),
      NULL },

    { ngx_string("signalr_jwt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt),
      NULL },

    { ngx_string("signalr_jwt_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt_key_files),
      NULL },

    { ngx_string("signalr_jwt_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt_issuer),
      NULL },

    { ngx_string("signalr_jwt_audience"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_signalr_str_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt_audiences),
      NULL },

    { ngx_string("signalr_jwt_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt_leeway),
      &ngx_http_signalr_leeway_bounds },

    { ngx_string("signalr_jwt_user_claim"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt_user_claim),
      NULL },

    /* authorization and limits: ngx_http_signalr_authz.c, _limits.c */

    { ngx_string("signalr_jwt_require_roles"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_signalr_str_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt_roles),
      NULL },

    { ngx_string("signalr_jwt_require_scopes"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_signalr_str_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt_scopes),
      NULL },

    { ngx_string("signalr_jwt_role_claims"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_signalr_str_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt_role_claims),
      NULL },

    { ngx_string("signalr_jwt_scope_claims"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_signalr_str_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt_scope_claims),
      NULL },

    { ngx_string("signalr_jwt_close_expired"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, jwt_close_expired),
      NULL },

    { ngx_string("signalr_max_invocation_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, max_invocation_id),
      &ngx_http_signalr_invocation_id_bounds },

    { ngx_string("signalr_max_arguments"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, max_arguments),
      &ngx_http_signalr_arguments_bounds },

    { ngx_string("signalr_max_streams"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, max_streams),
      NULL },

    { ngx_string("signalr_limit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_http_signalr_limit_zone,
      0,
      0,
      NULL },

    { ngx_string("signalr_limit_requests"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_signalr_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, limit_requests),
      &ngx_http_signalr_rate_limit },

    { ngx_string("signalr_limit_invocations"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_signalr_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, limit_invocations),
      &ngx_http_signalr_rate_limit },

    { ngx_string("signalr_limit_connections"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_signalr_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, limit_connections),
      NULL },

    { ngx_string("signalr_limit_streams"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_signalr_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_signalr_loc_conf_t, limit_streams),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_signalr_module_ctx = {
    ngx_http_signalr_add_variables,        /* preconfiguration */
    ngx_http_signalr_postconfiguration,    /* postconfiguration */

    ngx_http_signalr_create_main_conf,     /* create main configuration */
    ngx_http_signalr_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_signalr_create_loc_conf,      /* create location configuration */
    ngx_http_signalr_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_signalr_module = {
    NGX_MODULE_V1,
    &ngx_http_signalr_module_ctx,          /* module context */
    ngx_http_signalr_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_signalr_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_signalr_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_signalr_vars[] = {

    { ngx_string("signalr_user"), NULL,
      ngx_http_signalr_user_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("signalr_connection_id"), NULL,
      ngx_http_signalr_connection_id_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("signalr_redacted_args"), NULL,
      ngx_http_signalr_redacted_args_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_signalr_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_uint_t                    negotiate;
    ngx_http_signalr_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    rc = ngx_http_signalr_is_hub_request(r, slcf, &negotiate);

    if (rc != NGX_OK) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_NOT_FOUND,
                                             "no such hub endpoint");
    }

    if (negotiate || r->method == NGX_HTTP_OPTIONS) {
        return ngx_http_signalr_negotiate_handler(r);
    }

    if (r->method == NGX_HTTP_GET
        && ngx_http_signalr_header_has_token(r, "Upgrade", 7, "websocket"))
    {
        if (!(slcf->transports & SR_TRANSPORT_WEBSOCKETS)) {
            return ngx_http_signalr_send_problem(r, NGX_HTTP_NOT_FOUND,
                                                 "the WebSockets transport "
                                                 "is disabled here");
        }

        return ngx_http_signalr_websocket_handler(r);
    }

    return ngx_http_signalr_http_handler(r,
               ngx_http_signalr_header_has_token(r, "Accept", 6,
                                                 "text/event-stream"));
}


/*
 * A hub answers at its location path (the WebSocket) and at
 * "<path>/negotiate"; the official clients build the second from the
 * first. A regex location has no path to compare with, so there the
 * suffix alone decides.
 */

ngx_int_t
ngx_http_signalr_is_hub_request(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, ngx_uint_t *negotiate)
{
    size_t      n;
    u_char     *p;
    ngx_str_t  *loc, *uri;

    static ngx_str_t  suffix = ngx_string("/negotiate");

    loc = &slcf->location;
    uri = &r->uri;

    *negotiate = 0;

    if (uri->len >= suffix.len
        && ngx_strncmp(uri->data + uri->len - suffix.len, suffix.data,
                       suffix.len)
           == 0)
    {
        n = uri->len - suffix.len;

        if (loc->len == 0
            || (n == loc->len && ngx_strncmp(uri->data, loc->data, n) == 0))
        {
            *negotiate = 1;
            return NGX_OK;
        }
    }

    if (loc->len == 0) {
        return NGX_OK;
    }

    p = uri->data;
    n = uri->len;

    if (n > 0 && p[n - 1] == '/') {
        n--;
    }

    if (n == loc->len && ngx_strncmp(p, loc->data, n) == 0) {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


ngx_http_signalr_ctx_t *
ngx_http_signalr_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_signalr_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_signalr_module);

    if (ctx) {
        return ctx;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_signalr_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_signalr_ctx_t));

    cln->handler = ngx_http_signalr_ctx_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_signalr_module);

    return ctx;
}


static void
ngx_http_signalr_ctx_cleanup(void *data)
{
    ngx_http_signalr_ctx_t  *ctx = data;

    if (ctx->claims) {
        json_decref(ctx->claims);
        ctx->claims = NULL;
    }
}


static const char *
ngx_http_signalr_status_title(ngx_uint_t status)
{
    switch (status) {
    case NGX_HTTP_BAD_REQUEST:
        return "Bad Request";
    case NGX_HTTP_UNAUTHORIZED:
        return "Unauthorized";
    case NGX_HTTP_FORBIDDEN:
        return "Forbidden";
    case NGX_HTTP_NOT_FOUND:
        return "Not Found";
    case NGX_HTTP_NOT_ALLOWED:
        return "Method Not Allowed";
    case NGX_HTTP_CONFLICT:
        return "Conflict";
    case 426:
        return "Upgrade Required";
    case NGX_HTTP_TOO_MANY_REQUESTS:
        return "Too Many Requests";
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}


/*
 * Answers with an RFC 9457 problem document. The detail is a fixed text
 * of this module or a short reason from the shared library, never input
 * of the client, but it is escaped all the same.
 */

ngx_int_t
ngx_http_signalr_send_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail)
{
    size_t       len, dlen;
    ngx_buf_t   *b;
    const char  *title;

    static ngx_str_t  type = ngx_string("application/problem+json");

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    title = ngx_http_signalr_status_title(status);
    dlen = ngx_strlen(detail);

    len = sizeof("{\"type\":\"about:blank\",\"title\":\"\",\"status\":"
                 ",\"detail\":\"\"}") - 1
          + ngx_strlen(title) + NGX_INT_T_LEN
          + dlen + ngx_escape_json(NULL, (u_char *) detail, dlen);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last,
                          "{\"type\":\"about:blank\",\"title\":\"%s\","
                          "\"status\":%ui,\"detail\":\"", title, status);
    b->last = (u_char *) ngx_escape_json(b->last, (u_char *) detail, dlen);
    b->last = ngx_cpymem(b->last, "\"}", 2);

    if (status == 426) {
        ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");
    }

    return ngx_http_signalr_send_buffer(r, status, &type, b);
}


/*
 * Names a shared-memory zone in the slab allocator's own messages
 * ("... in signalr_limit_zone \"users\""), and keeps those quiet about a
 * full zone: the callers answer that themselves (503, 429).
 */

ngx_int_t
ngx_http_signalr_name_zone(ngx_shm_zone_t *shm_zone, ngx_slab_pool_t *shpool,
    const char *what)
{
    size_t  len;

    len = sizeof(" in  \"\"") + ngx_strlen(what) + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in %s \"%V\"%Z", what,
                &shm_zone->shm.name);

    shpool->log_nomem = 0;

    return NGX_OK;
}


/*
 * Sends b as the whole body of the answer, with the location's CORS
 * headers. Headers the caller added to r->headers_out stay.
 */

ngx_int_t
ngx_http_signalr_send_buffer(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, ngx_buf_t *b)
{
    ngx_int_t                     rc;
    ngx_chain_t                   out;
    ngx_http_signalr_loc_conf_t  *slcf;

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_type = *content_type;
    r->headers_out.content_type_len = content_type->len;
    r->headers_out.content_length_n = b->last - b->pos;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    if (ngx_http_signalr_cors_headers(r, slcf) == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_signalr_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


ngx_table_elt_t *
ngx_http_signalr_find_header(ngx_http_request_t *r, const char *name,
    size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/*
 * Whether any header called name lists token among its comma separated
 * elements, compared without case ("Connection: keep-alive, Upgrade").
 */

ngx_int_t
ngx_http_signalr_header_has_token(ngx_http_request_t *r, const char *name,
    size_t len, const char *token)
{
    size_t            tlen;
    u_char           *p, *last, *start, *end;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    tlen = ngx_strlen(token);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != len
            || ngx_strncasecmp(h[i].key.data, (u_char *) name, len) != 0)
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        while (p < last) {
            while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
                p++;
            }

            start = p;

            while (p < last && *p != ',') {
                p++;
            }

            end = p;

            while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
                end--;
            }

            if ((size_t) (end - start) == tlen
                && ngx_strncasecmp(start, (u_char *) token, tlen) == 0)
            {
                return 1;
            }
        }
    }
}


static ngx_int_t
ngx_http_signalr_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_signalr_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_user_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_signalr_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_signalr_module);

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    if (ctx == NULL || !ctx->authenticated) {
        v->len = 0;
        v->data = (u_char *) "";
        return NGX_OK;
    }

    v->len = ctx->user.len;
    v->data = ctx->user.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_connection_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_signalr_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_signalr_module);

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    if (ctx == NULL || ctx->connection_id.len == 0) {
        v->len = 0;
        v->data = (u_char *) "";
        return NGX_OK;
    }

    v->len = ctx->connection_id.len;
    v->data = ctx->connection_id.data;

    return NGX_OK;
}


/*
 * The query string with every access_token value replaced, so that an
 * access log never holds a bearer token. Names are compared without case
 * as ngx_http_arg() does.
 */

static ngx_int_t
ngx_http_signalr_redacted_args_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char  *p, *last, *name, *eq, *dst, *start;

    static ngx_str_t  key = ngx_string("access_token");
    static ngx_str_t  redacted = ngx_string("[redacted]");

    p = r->args.data;
    last = p + r->args.len;

    /* each argument shrinks to at least its name, "=" and the mark */
    start = ngx_pnalloc(r->pool, r->args.len
                                 + (r->args.len / (key.len + 1) + 1)
                                   * redacted.len);
    if (start == NULL) {
        return NGX_ERROR;
    }

    dst = start;

    while (p < last) {
        name = p;
        eq = NULL;

        while (p < last && *p != '&') {
            if (*p == '=' && eq == NULL) {
                eq = p;
            }

            p++;
        }

        if (eq
            && (size_t) (eq - name) == key.len
            && ngx_strncasecmp(name, key.data, key.len) == 0)
        {
            dst = ngx_cpymem(dst, name, key.len + 1);
            dst = ngx_cpymem(dst, redacted.data, redacted.len);

        } else {
            dst = ngx_cpymem(dst, name, p - name);
        }

        if (p < last) {
            *dst++ = *p++;
        }
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->len = dst - start;
    v->data = start;

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_postconfiguration(ngx_conf_t *cf)
{
    /* first, so that its access handler runs after the token check */
    if (ngx_http_signalr_limits_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_signalr_auth_init(cf);
}


static void *
ngx_http_signalr_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_signalr_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_signalr_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    smcf->registry_size = NGX_CONF_UNSET_SIZE;

    return smcf;
}


static char *
ngx_http_signalr_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_signalr_main_conf_t *smcf = conf;

    ngx_str_t  name;

    if (smcf->daemon.len == 0) {
        if (ngx_http_signalr_daemon(cf, NULL, smcf) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    ngx_conf_init_size_value(smcf->registry_size, 10 * 1024 * 1024);

    if (smcf->registry_size < 8 * ngx_pagesize) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "signalr_registry_zone \"%z\" is too small",
                           smcf->registry_size);
        return NGX_CONF_ERROR;
    }

    if (smcf->hubs == 0) {
        return NGX_CONF_OK;
    }

    ngx_str_set(&name, "signalr_registry");

    smcf->registry_zone = ngx_shared_memory_add(cf, &name,
                                                smcf->registry_size,
                                                &ngx_http_signalr_module);
    if (smcf->registry_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_signalr_registry_conf(cf, smcf->registry_zone) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_signalr_daemon(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_signalr_main_conf_t *smcf = conf;

    ngx_str_t  *value, def;
    ngx_url_t   u;

    if (cmd) {
        if (smcf->daemon.len) {
            return "is duplicate";
        }

        value = cf->args->elts;
        value = &value[1];

    } else {
        ngx_str_set(&def, NGX_HTTP_SIGNALR_DEFAULT_DAEMON);
        value = &def;
    }

    if (value->len < 6 || ngx_strncmp(value->data, "unix:", 5) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "signalr_daemon \"%V\" must be a unix: address",
                           value);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *value;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s in signalr_daemon \"%V\"",
                           u.err ? u.err : "no address", value);
        return NGX_CONF_ERROR;
    }

    smcf->daemon = *value;
    smcf->daemon_addr = u.addrs[0];

    return NGX_CONF_OK;
}


static char *
ngx_http_signalr_hub(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_signalr_loc_conf_t *slcf = conf;

    ngx_str_t                     *value;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_signalr_main_conf_t  *smcf;

    if (slcf->hub.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "takes a hub name";
    }

    slcf->hub = value[1];

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    clcf->handler = ngx_http_signalr_handler;

#if (NGX_PCRE)
    if (clcf->regex) {
        ngx_str_null(&slcf->location);

    } else
#endif
    {
        slcf->location = clcf->name;

        while (slcf->location.len > 1
               && slcf->location.data[slcf->location.len - 1] == '/')
        {
            slcf->location.len--;
        }
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_signalr_module);
    smcf->hubs++;

    return NGX_CONF_OK;
}


static char *
ngx_http_signalr_transports(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_signalr_loc_conf_t *slcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (slcf->transports != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    slcf->transports = 0;
    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "websockets") == 0) {
            slcf->transports |= SR_TRANSPORT_WEBSOCKETS;

        } else if (ngx_strcmp(value[i].data, "server_sent_events") == 0) {
            slcf->transports |= SR_TRANSPORT_SSE;

        } else if (ngx_strcmp(value[i].data, "long_polling") == 0) {
            slcf->transports |= SR_TRANSPORT_LONG_POLLING;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown transport \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* a directive taking one or more strings, appended to an array */

static char *
ngx_http_signalr_str_list(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t     *value, *s;
    ngx_uint_t     i;
    ngx_array_t  **a;

    a = (ngx_array_t **) (p + cmd->offset);

    if (*a != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *a = ngx_array_create(cf->pool, cf->args->nelts - 1, sizeof(ngx_str_t));
    if (*a == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty value in \"%V\"", &cmd->name);
            return NGX_CONF_ERROR;
        }

        s = ngx_array_push(*a);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        *s = value[i];
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_signalr_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_signalr_loc_conf_t  *slcf;

    slcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_signalr_loc_conf_t));
    if (slcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     slcf->hub = { 0, NULL };
     *     slcf->location = { 0, NULL };
     *     slcf->jwt_issuer = { 0, NULL };
     *     slcf->jwt_user_claim = { 0, NULL };
     *     slcf->jwt_keys = NULL;
     */

    slcf->transports = NGX_CONF_UNSET_UINT;
    slcf->stateful_reconnect = NGX_CONF_UNSET;
    slcf->reconnect_buffer = NGX_CONF_UNSET_SIZE;
    slcf->reconnect_window = NGX_CONF_UNSET_MSEC;
    slcf->keepalive_interval = NGX_CONF_UNSET_MSEC;
    slcf->client_timeout = NGX_CONF_UNSET_MSEC;
    slcf->handshake_timeout = NGX_CONF_UNSET_MSEC;
    slcf->max_message_size = NGX_CONF_UNSET_SIZE;
    slcf->send_queue_size = NGX_CONF_UNSET_SIZE;
    slcf->poll_timeout = NGX_CONF_UNSET_MSEC;
    slcf->disconnect_timeout = NGX_CONF_UNSET_MSEC;
    slcf->cors_origins = NGX_CONF_UNSET_PTR;
    slcf->jwt = NGX_CONF_UNSET;
    slcf->jwt_key_files = NGX_CONF_UNSET_PTR;
    slcf->jwt_audiences = NGX_CONF_UNSET_PTR;
    slcf->jwt_leeway = NGX_CONF_UNSET;
    slcf->jwt_roles = NGX_CONF_UNSET_PTR;
    slcf->jwt_scopes = NGX_CONF_UNSET_PTR;
    slcf->jwt_role_claims = NGX_CONF_UNSET_PTR;
    slcf->jwt_scope_claims = NGX_CONF_UNSET_PTR;
    slcf->jwt_close_expired = NGX_CONF_UNSET;
    slcf->max_invocation_id = NGX_CONF_UNSET_SIZE;
    slcf->max_arguments = NGX_CONF_UNSET_UINT;
    slcf->max_streams = NGX_CONF_UNSET_UINT;
    slcf->limit_requests = NGX_CONF_UNSET_PTR;
    slcf->limit_invocations = NGX_CONF_UNSET_PTR;
    slcf->limit_connections = NGX_CONF_UNSET_PTR;
    slcf->limit_streams = NGX_CONF_UNSET_PTR;

    return slcf;
}


static char *
ngx_http_signalr_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_signalr_loc_conf_t *prev = parent;
    ngx_http_signalr_loc_conf_t *conf = child;

    ngx_conf_merge_uint_value(conf->transports, prev->transports,
                              NGX_HTTP_SIGNALR_ALL_TRANSPORTS);
    ngx_conf_merge_value(conf->stateful_reconnect,
                         prev->stateful_reconnect, 0);
    ngx_conf_merge_size_value(conf->reconnect_buffer,
                              prev->reconnect_buffer, 100000);
    ngx_conf_merge_msec_value(conf->reconnect_window,
                              prev->reconnect_window, 30000);
    ngx_conf_merge_msec_value(conf->keepalive_interval,
                              prev->keepalive_interval, 15000);
    ngx_conf_merge_msec_value(conf->client_timeout,
                              prev->client_timeout, 30000);
    ngx_conf_merge_msec_value(conf->handshake_timeout,
                              prev->handshake_timeout, 15000);
    ngx_conf_merge_size_value(conf->max_message_size,
                              prev->max_message_size, 32 * 1024);
    ngx_conf_merge_size_value(conf->send_queue_size,
                              prev->send_queue_size, 1024 * 1024);
    ngx_conf_merge_msec_value(conf->poll_timeout, prev->poll_timeout, 90000);
    ngx_conf_merge_msec_value(conf->disconnect_timeout,
                              prev->disconnect_timeout, 15000);
    ngx_conf_merge_ptr_value(conf->cors_origins, prev->cors_origins, NULL);
    ngx_conf_merge_size_value(conf->max_invocation_id,
                              prev->max_invocation_id,
                              NGX_HTTP_SIGNALR_MAX_INVOCATION_ID);
    ngx_conf_merge_uint_value(conf->max_arguments, prev->max_arguments,
                              NGX_HTTP_SIGNALR_MAX_ARGUMENTS);
    ngx_conf_merge_uint_value(conf->max_streams, prev->max_streams, 100);

    if (conf->keepalive_interval == 0 || conf->client_timeout == 0
        || conf->handshake_timeout == 0 || conf->poll_timeout == 0
        || conf->disconnect_timeout == 0 || conf->reconnect_window == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "signalr timeouts must not be zero");
        return NGX_CONF_ERROR;
    }

    if (conf->max_message_size < 256) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "signalr_max_message_size must be 256 or more");
        return NGX_CONF_ERROR;
    }

    if (conf->send_queue_size < conf->max_message_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "signalr_send_queue_size must not be smaller "
                           "than signalr_max_message_size");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_signalr_limits_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_signalr_auth_merge(cf, prev, conf);
}


static ngx_int_t
ngx_http_signalr_init_process(ngx_cycle_t *cycle)
{
    ngx_http_signalr_sessions_init();
    ngx_http_signalr_relay_init();

    /* the first client of a worker would wait for OpenSSL's set-up */
    sr_jwt_prepare();

    return ngx_http_signalr_link_init_process(cycle);
}


static void
ngx_http_signalr_exit_process(ngx_cycle_t *cycle)
{
    /* long polling sessions hold no connection: they end here */
    ngx_http_signalr_lp_exit();
    ngx_http_signalr_link_exit_process(cycle);
    ngx_http_signalr_sessions_exit();
}
