#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <signalr/error.h>


void
sr_error_record(sr_error_t *err, int code, const char *fmt, ...)
{
    va_list  args;

    if (err == NULL) {
        return;
    }

    err->code = code;

    va_start(args, fmt);
    vsnprintf(err->str, sizeof(err->str), fmt, args);
    va_end(args);
}


void
sr_error_clear(sr_error_t *err)
{
    if (err == NULL) {
        return;
    }

    err->code = SR_OK;
    err->str[0] = '\0';
}
