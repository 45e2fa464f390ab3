#ifndef CEGRESS_H
#define CEGRESS_H

#include "se_egress.h"

#endif
