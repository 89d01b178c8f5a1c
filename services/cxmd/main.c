/*
 * cxmd: every cxm service in one process, on one port, over one data
 * directory - the embedded default.
 */
#include "feedback/feedback.h"
#include "journey/journey.h"
#include "personalisation/personalisation.h"
#include "profile/profile.h"

int main(int argc, char **argv)
{
    const cxm_module modules[] = {prof_module, jrn_module, fb_module, pers_module};
    return cxm_host_main(argc, argv,
                         "cxmd: the cxm Customer Experience Management engine, every service "
                         "in one process",
                         "127.0.0.1:7400", modules, sizeof modules / sizeof modules[0]);
}
