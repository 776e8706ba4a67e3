// Fibers: cooperative user-space threads with their own stacks, one per MSL thread of a threadgroup.
//
// A hand-written context switch (fiber.cpp: x86-64 System V and arm64, Linux and Apple) saves only
// the callee-saved registers and swaps stack pointers: no system call, a few nanoseconds per switch
// (swapcontext would save the signal mask with a syscall every time).
#pragma once

#include <cstddef>

namespace msl_rt {

// Saves the current context on the current stack, stores its stack pointer in *save_sp and resumes
// the context whose stack pointer is load_sp. Returns when some fiber switches back to *save_sp.
extern "C" void msl_rt_fiber_switch(void** save_sp, void* load_sp);

// Prepares a new fiber on the stack ending at stack_top (exclusive, 16-byte aligned) so that the
// first switch to the returned stack pointer calls entry(arg). entry must never return.
void* fiber_prepare(void* stack_top, void (*entry)(void*), void* arg);

}  // namespace msl_rt
