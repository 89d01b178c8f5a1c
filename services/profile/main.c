/*
 * cxm-profile: the profile service on its own.
 */
#include "profile.h"

int main(int argc, char **argv)
{
    return cxm_host_main(argc, argv,
                         "cxm-profile: the cxm profile service (one profile per customer across "
                         "identities, with consent, traits and segments)",
                         "127.0.0.1:7401", &prof_module, 1);
}
