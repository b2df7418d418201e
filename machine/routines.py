"""Import every module that declares native routines, so the registry is complete
before an image is laid out."""

from machine.ex import locks as _locks  # noqa: F401
from machine.ex import routines as _ex  # noqa: F401
from machine.ex import worker as _worker  # noqa: F401
from machine.hal import routines as _hal  # noqa: F401
from machine.io import cancel as _io_cancel  # noqa: F401
from machine.io import completion as _io_completion  # noqa: F401
from machine.io import control as _io_control  # noqa: F401
from machine.io import iomgr as _io  # noqa: F401
from machine.io import mdl as _io_mdl  # noqa: F401
from machine.io import readwrite as _io_readwrite  # noqa: F401
from machine.ke import apc as _apc  # noqa: F401
from machine.ke import bugcheck as _bugcheck  # noqa: F401
from machine.ke import clock as _clock  # noqa: F401
from machine.ke import dpc as _dpc  # noqa: F401
from machine.ke import exceptions as _exceptions  # noqa: F401
from machine.ke import interrupt as _interrupt  # noqa: F401
from machine.ke import irql as _irql  # noqa: F401
from machine.ke import timer as _timer  # noqa: F401
from machine.ke import trap as _trap  # noqa: F401
from machine.ke import userapc as _userapc  # noqa: F401
from machine.ke import wait as _wait  # noqa: F401
from machine.ke.idt import declare_generic_handlers  # noqa: E402
from machine.mm import iospace as _iospace  # noqa: F401
from machine.mm import mdl as _mm_mdl  # noqa: F401
from machine.ps import exit as _exit  # noqa: F401
from machine.ps import system_thread as _system_thread  # noqa: F401
from machine.ps import usermode as _usermode  # noqa: F401

declare_generic_handlers()

# Declared after the generic handlers so that nt's earlier routines keep their addresses.
from machine.io import unload as _unload  # noqa: E402, F401

# isort: split
# Device deletion and lookup, process and thread lookup: declared last so earlier nt
# addresses stay.
from machine.io import devobj as _devobj  # noqa: E402, F401
from machine.ps import lookup as _lookup  # noqa: E402, F401

# isort: split
# The power manager and IoAttachDevice, declared last so earlier nt addresses stay.
from machine.io import attach as _io_attach  # noqa: E402, F401
from machine.po import power as _power  # noqa: E402, F401

# isort: split
# Spin locks at DISPATCH_LEVEL, critical regions, stall, tick count: last, as above.
from machine.ke import driver_services as _driver_services  # noqa: E402, F401
