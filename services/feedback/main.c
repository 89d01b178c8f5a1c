/*
 * cxm-feedback: the feedback service on its own.
 */
#include "feedback.h"

int main(int argc, char **argv)
{
    return cxm_host_main(argc, argv,
                         "cxm-feedback: the cxm feedback service (NPS/CSAT/CES surveys, sentiment, "
                         "expectation gaps and follow-ups)",
                         "127.0.0.1:7403", &fb_module, 1);
}
