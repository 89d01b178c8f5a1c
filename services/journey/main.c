/*
 * cxm-journey: the journey service on its own.
 */
#include "journey.h"

int main(int argc, char **argv)
{
    return cxm_host_main(argc, argv,
                         "cxm-journey: the cxm journey service (touchpoint events, journey stages, "
                         "funnels, paths and per-touchpoint statistics)",
                         "127.0.0.1:7402", &jrn_module, 1);
}
