// Non-template collective bodies of msl_rt_simd.h.
#include "msl/msl_rt_simd.h"

namespace msl_rt {

void ballot_fn(lane* const* lanes, uint32_t n) {
    uint64_t bits = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (operand<bool>(lanes[i])) {
            bits |= uint64_t(1) << i;
        }
    }
    metal::simd_vote vote((metal::simd_vote::vote_t) bits);
    vote.active_ = (uint64_t(1) << n) - 1;  // n <= 32
    for (uint32_t i = 0; i < n; i++) {
        result<metal::simd_vote>(lanes[i]) = vote;
    }
}

void noop_fn(lane* const*, uint32_t) {}

}  // namespace msl_rt
