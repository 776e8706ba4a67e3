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

#if defined(__x86_64__)
// Frame pushed by msl_rt_fiber_switch, lowest address first: r15 r14 r13 r12 rbx rbp, return address.
// The trampoline receives entry in r13 and arg in r12.
asm(
    ".text\n"
    ".globl " MSL_RT_SYMBOL(msl_rt_fiber_switch) "\n"
    MSL_RT_FUNCTION_TYPE(msl_rt_fiber_switch)
    ".p2align 4\n"
    MSL_RT_SYMBOL(msl_rt_fiber_switch) ":\n"
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
void* fiber_prepare(void* stack_top, void (*entry)(void*), void* arg) {
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
    ".globl " MSL_RT_SYMBOL(msl_rt_fiber_switch) "\n"
    MSL_RT_FUNCTION_TYPE(msl_rt_fiber_switch)
    ".p2align 4\n"
    MSL_RT_SYMBOL(msl_rt_fiber_switch) ":\n"
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
void* fiber_prepare(void* stack_top, void (*entry)(void*), void* arg) {
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
