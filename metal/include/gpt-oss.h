/* gpt-oss-metal public C API: include this one header. */
#pragma once

#include <gpt-oss/macros.h>
#include <gpt-oss/types.h>
#include <gpt-oss/functions.h>
