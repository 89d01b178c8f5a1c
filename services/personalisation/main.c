/*
 * cxm-personalisation: the personalisation service on its own.
 */
#include "personalisation.h"

int main(int argc, char **argv)
{
    return cxm_host_main(argc, argv,
                         "cxm-personalisation: the cxm personalisation service "
                         "(next-best-experience recommendations and the experience catalogue)",
                         "127.0.0.1:7404", &pers_module, 1);
}
