#include "core/tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
    int is_float;
} dtype_info[DFA_DTYPE_COUNT] = {
    [DFA_F32] = {"F32", 4, 1},     [DFA_F16] = {"F16", 2, 1},     [DFA_BF16] = {"BF16", 2, 1},
    [DFA_F64] = {"F64", 8, 1},     [DFA_I64] = {"I64", 8, 0},     [DFA_I32] = {"I32", 4, 0},
    [DFA_I16] = {"I16", 2, 0},     [DFA_I8] = {"I8", 1, 0},       [DFA_U8] = {"U8", 1, 0},
    [DFA_U16] = {"U16", 2, 0},     [DFA_U32] = {"U32", 4, 0},     [DFA_U64] = {"U64", 8, 0},
    [DFA_BOOL] = {"BOOL", 1, 0},   [DFA_F8_E4M3] = {"F8_E4M3", 1, 1},
    [DFA_F8_E5M2] = {"F8_E5M2", 1, 1},
};

size_t dfa_dtype_size(dfa_dtype t) {
    return (unsigned)t < DFA_DTYPE_COUNT ? dtype_info[t].size : 0;
}

const char *dfa_dtype_name(dfa_dtype t) {
    return (unsigned)t < DFA_DTYPE_COUNT ? dtype_info[t].name : "?";
}

int dfa_dtype_is_float(dfa_dtype t) {
    return (unsigned)t < DFA_DTYPE_COUNT ? dtype_info[t].is_float : 0;
}

int dfa_dtype_parse(const char *name, dfa_dtype *out) {
    for (int i = 0; i < DFA_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (dfa_dtype)i;
            return 0;
        }
    }
    return -1;
}

int64_t dfa_tensor_numel(const dfa_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t dfa_tensor_nbytes(const dfa_tensor *t) {
    return (size_t)dfa_tensor_numel(t) * dfa_dtype_size(t->dtype);
}

dfa_status dfa_tensor_init(dfa_tensor *t, dfa_dtype dtype, dfa_device dev, int ndim,
                           const int64_t *shape, void *data, dfa_error *err) {
    if (ndim < 0 || ndim > DFA_MAX_DIMS)
        DFA_FAIL(err, DFA_ERR_SHAPE, "tensor rank %d outside [0, %d]", ndim, DFA_MAX_DIMS);
    if ((unsigned)dtype >= DFA_DTYPE_COUNT) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "bad dtype %d", (int)dtype);
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->dev = dev;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) DFA_FAIL(err, DFA_ERR_SHAPE, "negative dimension %lld at axis %d", (long long)shape[i], i);
        t->shape[i] = shape[i];
    }
    t->data = data;
    return DFA_OK;
}

int dfa_tensor_same_shape(const dfa_tensor *a, const dfa_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *dfa_shape_str(int ndim, const int64_t *shape, char *buf, size_t len) {
    size_t o = 0;
    if (len == 0) return buf;
    buf[0] = '\0';
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}

float dfa_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t dfa_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (absx < 0x38800000u) {                                   /* subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14 + (113 - e) */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((absx >> 13) - (112u << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

float dfa_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t dfa_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    uint32_t lsb = (x >> 16) & 1;
    x += 0x7fff + lsb;
    return (uint16_t)(x >> 16);
}

static double load_as_f64(const void *src, dfa_dtype t, size_t i) {
    switch (t) {
    case DFA_F32: return ((const float *)src)[i];
    case DFA_F64: return ((const double *)src)[i];
    case DFA_F16: return dfa_f16_to_f32(((const uint16_t *)src)[i]);
    case DFA_BF16: return dfa_bf16_to_f32(((const uint16_t *)src)[i]);
    case DFA_I64: return (double)((const int64_t *)src)[i];
    case DFA_I32: return ((const int32_t *)src)[i];
    case DFA_I16: return ((const int16_t *)src)[i];
    case DFA_I8: return ((const int8_t *)src)[i];
    case DFA_U8: return ((const uint8_t *)src)[i];
    case DFA_BOOL: return ((const uint8_t *)src)[i] != 0;
    case DFA_U16: return ((const uint16_t *)src)[i];
    case DFA_U32: return ((const uint32_t *)src)[i];
    case DFA_U64: return (double)((const uint64_t *)src)[i];
    default: return NAN;
    }
}

dfa_status dfa_convert(void *dst, dfa_dtype dst_t, const void *src, dfa_dtype src_t, size_t n,
                       dfa_error *err) {
    if (dst_t == src_t) {
        memcpy(dst, src, n * dfa_dtype_size(dst_t));
        return DFA_OK;
    }
    if (src_t == DFA_F8_E4M3 || src_t == DFA_F8_E5M2)
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "conversion from %s is not supported", dfa_dtype_name(src_t));
    switch (dst_t) {
    case DFA_F32: {
        float *d = dst;
        if (src_t == DFA_BF16) {
            const uint16_t *s = src;
            for (size_t i = 0; i < n; i++) d[i] = dfa_bf16_to_f32(s[i]);
        } else if (src_t == DFA_F16) {
            const uint16_t *s = src;
            for (size_t i = 0; i < n; i++) d[i] = dfa_f16_to_f32(s[i]);
        } else {
            for (size_t i = 0; i < n; i++) d[i] = (float)load_as_f64(src, src_t, i);
        }
        return DFA_OK;
    }
    case DFA_F64: {
        double *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = load_as_f64(src, src_t, i);
        return DFA_OK;
    }
    case DFA_F16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = dfa_f32_to_f16((float)load_as_f64(src, src_t, i));
        return DFA_OK;
    }
    case DFA_BF16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = dfa_f32_to_bf16((float)load_as_f64(src, src_t, i));
        return DFA_OK;
    }
    default:
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "conversion %s -> %s is not supported",
                 dfa_dtype_name(src_t), dfa_dtype_name(dst_t));
    }
}
