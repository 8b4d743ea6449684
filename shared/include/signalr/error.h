/*
 * Result codes and error reports shared by every function of the library.
 *
 * Zero and positive codes are successes. Negative codes are failures and
 * come with a bounded, human-readable reason in the caller's sr_error_t.
 * The library never logs: the caller decides what reaches an operator.
 */

#ifndef SIGNALR_ERROR_H
#define SIGNALR_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define SR_OK                0
#define SR_AGAIN             1   /* input ends inside a unit: feed more */

#define SR_ERR_PROTOCOL     -1   /* input violates the protocol */
#define SR_ERR_TOO_LARGE    -2   /* input exceeds a configured limit */
#define SR_ERR_NOMEM        -3   /* an allocation failed */
#define SR_ERR_UNSUPPORTED  -4   /* well formed, but not supported */
#define SR_ERR_INVALID      -5   /* the caller passed unusable arguments */
#define SR_ERR_AUTH         -6   /* a credential was refused */
#define SR_ERR_IO           -7   /* a file or system call failed */

#define SR_ERRSTR_SIZE     128

typedef struct {
    int   code;
    char  str[SR_ERRSTR_SIZE];
} sr_error_t;

/*
 * Records code and a printf-style reason in err, truncated to fit.
 * err may be NULL, in which case nothing is recorded. The expression
 * has the value of code, so that a failing path can read
 * "return sr_error_set(err, ...);". code is evaluated twice: pass a
 * constant or a plain variable.
 *
 * A macro (a GNU statement expression, which gcc and clang accept in C
 * and C++) rather than a function returning code: the compiler then
 * sees that such a return never yields SR_OK, and does not warn that a
 * caller's out-parameters may be used uninitialised.
 */
#define sr_error_set(err, code, ...)                                        \
    __extension__ ({                                                        \
        sr_error_record((err), (code), __VA_ARGS__);                        \
        (code);                                                             \
    })

void sr_error_record(sr_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Empties err (code SR_OK, empty reason). err may be NULL. */
void sr_error_clear(sr_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* SIGNALR_ERROR_H */
