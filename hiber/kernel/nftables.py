"""nftables through libnftables (the library the nft tool is made of), by
ctypes: this machine has the library and no nft binary."""

import ctypes
import ctypes.util


class NftError(Exception):
    pass


def _library():
    for name in ("libnftables.so.1", ctypes.util.find_library("nftables")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        return lib
    return None


def run(*commands):
    """Run nft commands as one batch (one transaction: all or nothing);
    NftError with nft's first line of complaint when it refuses. Returns
    what nft prints (for "list ...")."""
    lib = _library()
    if lib is None:
        raise NftError("libnftables.so.1 is not installed")
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise NftError("cannot make an nftables context")
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        if lib.nft_run_cmd_from_buffer(ctx, "\n".join(commands).encode()) != 0:
            error = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
            lines = error.strip().splitlines()
            raise NftError(lines[0] if lines else "failed")
        return (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)


def works():
    """Whether a table can be made and removed here (root, nf_tables)."""
    name = "inet hiber-probe"
    run(f"add table {name}", f"delete table {name}")
    return "libnftables, inet tables"
