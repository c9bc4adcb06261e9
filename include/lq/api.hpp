// liblq: symbol export macro.
#pragma once

#if defined(LQ_SHARED_BUILD)
#define LQ_API __attribute__((visibility("default")))
#else
#define LQ_API
#endif
