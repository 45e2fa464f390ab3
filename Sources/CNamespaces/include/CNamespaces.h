#ifndef CNAMESPACES_H
#define CNAMESPACES_H

#include "se_protocol.h"
#include "se_clone.h"
#include "se_control.h"
#include "se_netns.h"
#include "se_pidfd.h"
#include "se_fd.h"
#include "se_mount.h"

#endif
