/*
 * fsent_blob.S - the committed model.bin, embedded read-only into the
 * library (fsent_builtin). The assembler finds it through -I (CMake).
 */
    .section .rodata
    .balign 16
    .globl fsent__blob
    .hidden fsent__blob
    .type fsent__blob, @object
fsent__blob:
    .incbin "model.bin"
    .globl fsent__blob_end
    .hidden fsent__blob_end
fsent__blob_end:
    .byte 0
    .size fsent__blob, . - fsent__blob
    .section .note.GNU-stack, "", @progbits
