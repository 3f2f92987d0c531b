/* fuzz_safetensors.c - libFuzzer target for the safetensors header parser: the input is a
 * whole file image (8-byte length + JSON + data). Any input must give DFA_OK or an error
 * with a message; never a crash, an out-of-bounds read or a leak. Built by tests/fuzz/run.sh. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dfa_st_tensor *t = NULL;
    int n = -1;
    dfa_error err;
    dfa_error_clear(&err);
    dfa_status s = dfa_st_parse_header(data, size, size, "fuzz.safetensors", &t, &n, &err);
    if (s == DFA_OK) {
        /* what a valid table promises: ranges inside the data, sizes consistent */
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | data[i];
        for (int i = 0; i < n; i++) {
            uint64_t need = dfa_dtype_size(t[i].dtype);
            for (int d = 0; d < t[i].ndim; d++) need *= (uint64_t)t[i].shape[d];
            if (t[i].begin > t[i].end || 8 + hl + t[i].end > size || t[i].end - t[i].begin != need || !t[i].name)
                abort();
        }
        dfa_st_free_table(t, n);
    } else if (t != NULL || err.msg[0] == '\0' || err.code != s) {
        abort();
    }
    return 0;
}
