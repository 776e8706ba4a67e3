#pragma once

#ifndef GPTOSS_ABI
  #if defined(__GNUC__) || defined(__clang__)
    #define GPTOSS_ABI __attribute__((visibility("default")))
  #else
    #define GPTOSS_ABI
  #endif
#endif
