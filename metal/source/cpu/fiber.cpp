// Context switch for fibers (see fiber.h). Only callee-saved registers are saved: a switch is a
// function call as far as the compiler is concerned, so caller-saved registers are already dead.
#include "fiber.h"

#include <cstdint>

// Symbols stay inside the linked image (hidden / private_extern): calls need no PLT indirection.
#if defined(__APPLE__)
  #define MSL_RT_SYMBOL(name) "_" #name
  #define MSL_RT_FUNCTION_TYPE(name) ".private_extern _" #name "\n"
#else
  #define MSL_RT_SYMBOL(name) #name
  #define MSL_RT_FUNCTION_TYPE(name) ".type " #name ", %function\n.hidden " #name "\n"
#endif

extern "C" void msl_rt_fiber_trampoline();

// AddressSanitizer (GPTOSS_SANITIZE=address): ASan must be told about every stack switch, or it takes
// a fiber's stack for a wild region of the thread's stack (false stack-buffer-overflow reports,
// "__asan_handle_no_return" warnings). Then the assembly below is msl_rt_fiber_switch_raw and
// msl_rt_fiber_switch is the annotated C++ wrapper at the end of this file.
#if defined(__SANITIZE_ADDRESS__)
  #define MSL_RT_FIBER_ASAN 1
#elif defined(__has_feature)
  #if __has_feature(address_sanitizer)
    #define MSL_RT_FIBER_ASAN 1
  #endif
#endif
#if defined(MSL_RT_FIBER_ASAN)
  #define MSL_RT_SWITCH_NAME msl_rt_fiber_switch_raw
#else
  #define MSL_RT_SWITCH_NAME msl_rt_fiber_switch
#endif
#define MSL_RT_STRINGIFY_(x) #x
#define MSL_RT_STRINGIFY(x) MSL_RT_STRINGIFY_(x)
#if defined(__APPLE__)
  #define MSL_RT_SWITCH_SYMBOL "_" MSL_RT_STRINGIFY(MSL_RT_SWITCH_NAME)
  #define MSL_RT_SWITCH_TYPE ".private_extern " MSL_RT_SWITCH_SYMBOL "\n"
#else
  #define MSL_RT_SWITCH_SYMBOL MSL_RT_STRINGIFY(MSL_RT_SWITCH_NAME)
  #define MSL_RT_SWITCH_TYPE ".type " MSL_RT_SWITCH_SYMBOL ", %function\n.hidden " MSL_RT_SWITCH_SYMBOL "\n"
#endif
#if defined(MSL_RT_FIBER_ASAN)
extern "C" void msl_rt_fiber_switch_raw(void** save_sp, void* load_sp);
namespace msl_rt {
static void* fiber_prepare_raw(void* stack_top, void (*entry)(void*), void* arg);
}
  #define MSL_RT_PREPARE_NAME fiber_prepare_raw
#else
  #define MSL_RT_PREPARE_NAME fiber_prepare
#endif

#if defined(__x86_64__)
// Frame pushed by msl_rt_fiber_switch, lowest address first: r15 r14 r13 r12 rbx rbp, return address.
// The trampoline receives entry in r13 and arg in r12.
asm(
    ".text\n"
    ".globl " MSL_RT_SWITCH_SYMBOL "\n"
    MSL_RT_SWITCH_TYPE
    ".p2align 4\n"
    MSL_RT_SWITCH_SYMBOL ":\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".globl " MSL_RT_SYMBOL(msl_rt_fiber_trampoline) "\n"
    MSL_RT_FUNCTION_TYPE(msl_rt_fiber_trampoline)
    ".p2align 4\n"
    MSL_RT_SYMBOL(msl_rt_fiber_trampoline) ":\n"
    "    movq %r12, %rdi\n"
    "    callq *%r13\n"
    "    ud2\n");

namespace msl_rt {
void* MSL_RT_PREPARE_NAME(void* stack_top, void (*entry)(void*), void* arg) {
    // After the 6 pops and ret, rsp = top - 16: 16-byte aligned before the trampoline's call, as the ABI requires.
    uintptr_t* sp = reinterpret_cast<uintptr_t*>(reinterpret_cast<uintptr_t>(stack_top) & ~uintptr_t(15)) - 9;
    sp[0] = 0;                                         // r15
    sp[1] = 0;                                         // r14
    sp[2] = reinterpret_cast<uintptr_t>(entry);        // r13
    sp[3] = reinterpret_cast<uintptr_t>(arg);          // r12
    sp[4] = 0;                                         // rbx
    sp[5] = 0;                                         // rbp (ends frame-pointer walks)
    sp[6] = reinterpret_cast<uintptr_t>(&msl_rt_fiber_trampoline);
    sp[7] = 0;
    sp[8] = 0;
    return sp;
}
}  // namespace msl_rt

#elif defined(__aarch64__) || defined(__arm64__)
// Frame (176 bytes, keeps sp 16-byte aligned): x19..x28, x29, x30, d8..d15.
// The trampoline receives arg in x19 and entry in x20; x30 (the return address) is the trampoline.
asm(
    ".text\n"
    ".globl " MSL_RT_SWITCH_SYMBOL "\n"
    MSL_RT_SWITCH_TYPE
    ".p2align 4\n"
    MSL_RT_SWITCH_SYMBOL ":\n"
    "    sub sp, sp, #176\n"
    "    stp x19, x20, [sp, #0]\n"
    "    stp x21, x22, [sp, #16]\n"
    "    stp x23, x24, [sp, #32]\n"
    "    stp x25, x26, [sp, #48]\n"
    "    stp x27, x28, [sp, #64]\n"
    "    stp x29, x30, [sp, #80]\n"
    "    stp d8, d9, [sp, #96]\n"
    "    stp d10, d11, [sp, #112]\n"
    "    stp d12, d13, [sp, #128]\n"
    "    stp d14, d15, [sp, #144]\n"
    "    mov x9, sp\n"
    "    str x9, [x0]\n"
    "    mov sp, x1\n"
    "    ldp x19, x20, [sp, #0]\n"
    "    ldp x21, x22, [sp, #16]\n"
    "    ldp x23, x24, [sp, #32]\n"
    "    ldp x25, x26, [sp, #48]\n"
    "    ldp x27, x28, [sp, #64]\n"
    "    ldp x29, x30, [sp, #80]\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    add sp, sp, #176\n"
    "    ret\n"
    ".globl " MSL_RT_SYMBOL(msl_rt_fiber_trampoline) "\n"
    MSL_RT_FUNCTION_TYPE(msl_rt_fiber_trampoline)
    ".p2align 4\n"
    MSL_RT_SYMBOL(msl_rt_fiber_trampoline) ":\n"
    "    mov x0, x19\n"
    "    blr x20\n"
    "    brk #0\n");

namespace msl_rt {
void* MSL_RT_PREPARE_NAME(void* stack_top, void (*entry)(void*), void* arg) {
    uintptr_t* sp = reinterpret_cast<uintptr_t*>((reinterpret_cast<uintptr_t>(stack_top) & ~uintptr_t(15)) - 176);
    for (int i = 0; i < 22; i++) {
        sp[i] = 0;
    }
    sp[0] = reinterpret_cast<uintptr_t>(arg);          // x19
    sp[1] = reinterpret_cast<uintptr_t>(entry);        // x20
    sp[11] = reinterpret_cast<uintptr_t>(&msl_rt_fiber_trampoline);  // x30
    return sp;
}
}  // namespace msl_rt

#else
  #error "The MSL CPU execution layer's fibers support x86-64 and arm64 only"
#endif

#if defined(MSL_RT_FIBER_ASAN)
// ---- AddressSanitizer annotations ----
// Every switch is bracketed as ASan documents (sanitizer/common_interface_defs.h):
// __sanitizer_start_switch_fiber(&fake_stack, target_bottom, target_size) just before it, and
// __sanitizer_finish_switch_fiber(fake_stack, ...) first thing on the resumed side (after the raw
// switch returns, or at the entry of a new fiber).
//
// Target bounds without changing the scheduler: a worker thread runs one threadgroup at a time; the
// only non-fiber context is the worker's own stack (the "scheduler"), which switches to the first
// lane and gets control back from the last one. So
//  * on the scheduler, the target is a fiber;
//  * on a fiber, the target is the scheduler exactly when load_sp is the stack pointer the scheduler
//    saved (its save_sp slot is remembered when it switches away), else another fiber.
// A fiber's bounds are its stack slot: slots are stack_slot_size (a power of two) bytes, aligned to
// their size (scheduler.cpp), so the slot of any address on it is that address rounded down. The
// scheduler's bounds are what ASan reports as the previous stack when a fiber first resumes from it.
//
// A lane that finishes or faults never returns from its last switch, so the ASan redzones of the
// frames still live on its stack stay poisoned; fiber_prepare reuses the slot for the next
// threadgroup and unpoisons it first. Frames below the deepest switch point returned normally (and
// were unpoisoned by their epilogues), so only [lowest switch point - margin, top) can hold stale
// poison: each switch away from a fiber records that low-water mark per slot, and fiber_prepare
// unpoisons down to it (not the whole slot: a shadow memset per lane per threadgroup would dominate).
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>

#include <unordered_map>

namespace msl_rt {
extern size_t stack_slot_size;  // scheduler.cpp: bytes per fiber stack slot (a power of two)
}

namespace {

struct fiber_asan_thread_state {
    void** scheduler_save_sp = nullptr;     // where the scheduler saved its stack pointer
    const void* scheduler_bottom = nullptr;  // the scheduler's (thread's) stack, as ASan knows it
    size_t scheduler_size = 0;
    bool on_fiber = false;
    bool leaving_scheduler = false;          // the next finish_switch reports the scheduler's bounds
    std::unordered_map<uintptr_t, uintptr_t> low_water;  // slot bottom -> lowest address to unpoison
};
// Below the wrapper's frame address: its own ASan frame and the registers the raw switch pushes.
constexpr uintptr_t switch_frame_margin = 4096;
thread_local fiber_asan_thread_state asan_state;

struct fiber_start {
    void (*entry)(void*);
    void* arg;
};

void slot_bounds(const void* p, const void** bottom, size_t* size) {
    const uintptr_t slot = msl_rt::stack_slot_size;
    *bottom = reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) & ~(slot - 1));
    *size = slot;
}

void finish_switch(void* fake_stack) {
    fiber_asan_thread_state& state = asan_state;
    const void* old_bottom = nullptr;
    size_t old_size = 0;
    __sanitizer_finish_switch_fiber(fake_stack, &old_bottom, &old_size);
    if (state.leaving_scheduler) {
        state.leaving_scheduler = false;
        state.scheduler_bottom = old_bottom;
        state.scheduler_size = old_size;
    }
}

// First code of a new fiber (fiber_prepare's entry): complete the switch that started it.
void fiber_asan_entry(void* start_on_stack) {
    const fiber_start start = *static_cast<fiber_start*>(start_on_stack);
    finish_switch(nullptr);
    start.entry(start.arg);
    __builtin_trap();  // entry never returns (fiber.h)
}

}  // namespace

namespace msl_rt {
void* fiber_prepare(void* stack_top, void (*entry)(void*), void* arg) {
    const void* bottom;
    size_t size;
    slot_bounds(static_cast<char*>(stack_top) - 1, &bottom, &size);
    const uintptr_t top = reinterpret_cast<uintptr_t>(stack_top);
    uintptr_t low = top > reinterpret_cast<uintptr_t>(bottom) + switch_frame_margin ? top - switch_frame_margin
                                                                                     : reinterpret_cast<uintptr_t>(bottom);
    auto& low_water = asan_state.low_water;
    const auto found = low_water.find(reinterpret_cast<uintptr_t>(bottom));
    if (found != low_water.end()) {
        low = found->second < low ? found->second : low;
        low_water.erase(found);
    }
    __asan_unpoison_memory_region(reinterpret_cast<void*>(low), static_cast<size_t>(top - low));
    // {entry, arg} sit at the top of the new stack, above the frame fiber_prepare_raw builds.
    fiber_start* start = reinterpret_cast<fiber_start*>(
        (reinterpret_cast<uintptr_t>(stack_top) & ~uintptr_t(15)) - sizeof(fiber_start));
    start->entry = entry;
    start->arg = arg;
    return fiber_prepare_raw(start, &fiber_asan_entry, start);
}
}  // namespace msl_rt

extern "C" void msl_rt_fiber_switch(void** save_sp, void* load_sp) {
    fiber_asan_thread_state& state = asan_state;
    const void* bottom;
    size_t size;
    const bool from_scheduler = !state.on_fiber;
    if (from_scheduler) {
        state.scheduler_save_sp = save_sp;
        state.leaving_scheduler = true;
        state.on_fiber = true;
        slot_bounds(load_sp, &bottom, &size);
    } else if (state.scheduler_save_sp != nullptr && load_sp == *state.scheduler_save_sp) {
        state.on_fiber = false;
        bottom = state.scheduler_bottom;
        size = state.scheduler_size;
    } else {
        slot_bounds(load_sp, &bottom, &size);
    }
    if (!from_scheduler) {
        // Leaving a fiber: remember how deep its live frames go (see the comment at the top).
        const void* own_bottom;
        size_t own_size;
        const uintptr_t frame = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
        slot_bounds(reinterpret_cast<void*>(frame), &own_bottom, &own_size);
        const uintptr_t slot = reinterpret_cast<uintptr_t>(own_bottom);
        const uintptr_t mark = frame > slot + switch_frame_margin ? frame - switch_frame_margin : slot;
        auto inserted = state.low_water.emplace(slot, mark);
        if (!inserted.second && mark < inserted.first->second) {
            inserted.first->second = mark;
        }
    }
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, bottom, size);
    msl_rt_fiber_switch_raw(save_sp, load_sp);
    finish_switch(fake_stack);
}
#endif  // MSL_RT_FIBER_ASAN
