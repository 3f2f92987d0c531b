/* attn_cost.c - method names and exact score entries per method (no BLAS, no OpenMP: the
 * plan code, its fuzz target and the CLI use these without the kernels). */
#include "attn/attn.h"

const char *dfa_attn_method_name(int method) {
    static const char *const names[] = {"full", "arrow", "arrow_rs", "cache"};
    return method >= 0 && method < DFA_ATTN_METHOD_COUNT ? names[method] : "?";
}

int64_t dfa_attn_head_entries(const dfa_attn_layout *layout, int method, int window, int store_res,
                              int res_window) {
    switch (method) {
    case DFA_ATTN_FULL:
        return dfa_mask_entries(layout, -1) + (store_res ? dfa_mask_entries(layout, res_window) : 0);
    case DFA_ATTN_ARROW:
    case DFA_ATTN_ARROW_RS: return dfa_mask_entries(layout, window);
    default: return 0;
    }
}
