/* Compiles the ABI header for the host too, so its static assertions hold on
 * both sides of the boundary. */
#include "mizar_abi.h"
