/* Elementwise folds of the collective region (_fastcoll.c): out = out op in, for the predefined ops on
 * plain numeric buffers. Included by _fastcoll.c only. Integer sums and products wrap (unsigned
 * arithmetic, as numpy); MAX/MIN of floats let NaN win, as numpy's maximum/minimum do. */
#ifndef GRANNY_FASTFOLD_H
#define GRANNY_FASTFOLD_H

enum { OP_SUM, OP_PROD, OP_MAX, OP_MIN, OP_BAND, OP_BOR, OP_BXOR };

#define FOLD_INT(T, UT)                                                                                    \
    {                                                                                                      \
        T *o = (T *)out;                                                                                   \
        const T *a = (const T *)in;                                                                        \
        switch (op) {                                                                                      \
        case OP_SUM: for (Py_ssize_t k = 0; k < cnt; k++) o[k] = (T)((UT)o[k] + (UT)a[k]); break;          \
        case OP_PROD: for (Py_ssize_t k = 0; k < cnt; k++) o[k] = (T)((UT)o[k] * (UT)a[k]); break;         \
        case OP_MAX: for (Py_ssize_t k = 0; k < cnt; k++) o[k] = a[k] > o[k] ? a[k] : o[k]; break;          \
        case OP_MIN: for (Py_ssize_t k = 0; k < cnt; k++) o[k] = a[k] < o[k] ? a[k] : o[k]; break;          \
        case OP_BAND: for (Py_ssize_t k = 0; k < cnt; k++) o[k] &= a[k]; break;                            \
        case OP_BOR: for (Py_ssize_t k = 0; k < cnt; k++) o[k] |= a[k]; break;                             \
        case OP_BXOR: for (Py_ssize_t k = 0; k < cnt; k++) o[k] ^= a[k]; break;                            \
        default: return 0;                                                                                 \
        }                                                                                                  \
        return 1;                                                                                          \
    }

/* NaN wins, as numpy's maximum/minimum */
#define FOLD_FLOAT(T)                                                                                      \
    {                                                                                                      \
        T *o = (T *)out;                                                                                   \
        const T *a = (const T *)in;                                                                        \
        switch (op) {                                                                                      \
        case OP_SUM: for (Py_ssize_t k = 0; k < cnt; k++) o[k] = o[k] + a[k]; break;                       \
        case OP_PROD: for (Py_ssize_t k = 0; k < cnt; k++) o[k] = o[k] * a[k]; break;                      \
        case OP_MAX: for (Py_ssize_t k = 0; k < cnt; k++) o[k] = (isnan(o[k]) || o[k] >= a[k]) ? o[k] : a[k]; break; \
        case OP_MIN: for (Py_ssize_t k = 0; k < cnt; k++) o[k] = (isnan(o[k]) || o[k] <= a[k]) ? o[k] : a[k]; break; \
        default: return 0;                                                                                 \
        }                                                                                                  \
        return 1;                                                                                          \
    }

/* out = out op in, elementwise (out holds the lower ranks' part): 1 done, 0 unsupported */
static int fold(char fmt, int op, char *out, const char *in, Py_ssize_t cnt) {
    switch (fmt) {
    case 'd': FOLD_FLOAT(double)
    case 'f': FOLD_FLOAT(float)
    case 'b': FOLD_INT(int8_t, uint8_t)
    case 'B': FOLD_INT(uint8_t, uint8_t)
    case 'h': FOLD_INT(int16_t, uint16_t)
    case 'H': FOLD_INT(uint16_t, uint16_t)
    case 'i': FOLD_INT(int32_t, uint32_t)
    case 'I': FOLD_INT(uint32_t, uint32_t)
    case 'l': case 'q': FOLD_INT(int64_t, uint64_t)
    case 'L': case 'Q': FOLD_INT(uint64_t, uint64_t)
    default: return 0;
    }
}

static int supported(const Py_buffer *v, int op) {
    const char *f = v->format;
    if (f == NULL)
        return 0;
    if (f[0] == '@')
        f++;
    if (f[0] == '\0' || f[1] != '\0')
        return 0;
    Py_ssize_t size;
    switch (f[0]) {
    case 'b': case 'B': size = 1; break;
    case 'h': case 'H': size = 2; break;
    case 'i': case 'I': case 'f': size = 4; break;
    case 'l': case 'L': case 'q': case 'Q': case 'd': size = 8; break;
    default: return 0;
    }
    if (v->itemsize != size)
        return 0;
    char probe[8] = {0}, one[8] = {0};
    return fold(f[0], op, probe, one, 0) ? f[0] : 0; /* cnt 0: only asks whether (type, op) is known */
}

#endif
