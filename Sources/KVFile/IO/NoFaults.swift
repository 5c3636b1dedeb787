#if !DEBUG
/// Release builds carry no fault twin (``IOFaults`` is compiled into debug
/// builds, for the tests): nothing is ever installed, so ``Syscalls``' hooks
/// find none and the compiler removes them.
final class IOFaults {
    enum Call { case open, write, read, sync, syncDirectory, truncate, reserve, rename, unlink, makeDirectory, map }

    @inline(__always) static func covering(_ path: String) -> IOFaults? { nil }
    func check(_ call: Call, _ path: String) throws(KVFileError) {}
    var writeLimit: Int? { nil }
    func didRead(_ path: String, at offset: Int, _ bytes: UnsafeMutableRawBufferPointer) {}
    func syncFailed(_ fd: Int32, _ path: String) {}
    func didSync(_ fd: Int32, _ path: String) {}
    func willRemove(_ path: String) {}
    func takeSpace(_ bytes: Int) -> Bool { true }
}
#endif
