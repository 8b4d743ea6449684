/*
 * The claims of a connection's token, which the daemon gets with OPEN
 * and a parked connection keeps: past the OPEN a session holds them as
 * compact JSON text, parsed again only to be sent again (the link came
 * back, the connection is parked).
 *
 * Design note: a jansson object of a token's half dozen claims is a
 * hash table, a pair and a value per claim, about a kilobyte in small
 * allocations; its text is a few hundred bytes in one. Connections live
 * long and are many, and these are the only uses.
 */

#include "ngx_http_signalr_module.h"


/* from here on the session keeps its claims as text */

void
ngx_http_signalr_claims_freeze(ngx_http_signalr_session_t *s)
{
    char  *text;

    if (s->claims == NULL) {
        return;
    }

    if (s->claims_text == NULL) {
        text = json_dumps(s->claims, JSON_COMPACT);

        /* without the memory for the text the object stays */
        if (text == NULL) {
            return;
        }

        s->claims_text = text;
    }

    json_decref(s->claims);
    s->claims = NULL;
}


/* s->claims for a moment, until ngx_http_signalr_claims_freeze() */

ngx_int_t
ngx_http_signalr_claims_thaw(ngx_http_signalr_session_t *s)
{
    json_error_t  error;

    if (s->claims || s->claims_text == NULL) {
        return NGX_OK;
    }

    s->claims = json_loads(s->claims_text, 0, &error);

    if (s->claims == NULL) {
        ngx_log_error(NGX_LOG_ALERT, s->log, 0,
                      "signalr connection \"%s\": json_loads() of its "
                      "claims failed: %s", s->id, error.text);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_signalr_claims_free(ngx_http_signalr_session_t *s)
{
    if (s->claims) {
        json_decref(s->claims);
        s->claims = NULL;
    }

    if (s->claims_text) {
        free(s->claims_text);
        s->claims_text = NULL;
    }
}
