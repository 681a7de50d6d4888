;; hog.wat: eats memory, to prove the runtime's per-instance memory limit.
;;
;;   Ping  -> "pong" (the same Actor keeps serving after a memory failure)
;;   Hog   -> memory.grow(16 pages) until it returns -1, then `unreachable` (a trap caused by
;;            the memory limit: the runtime should report kind "memory")
;;   Grow  -> same growth, but then answers normally with the final memory size in pages
;;            (u32 little-endian), so a test can check the limit itself
;;   Double -> grow to 65 pages (just over half of an 8 MiB limit), then ask for as much again,
;;            as a doubling buffer does; `unreachable` when refused (an allocator's abort far
;;            from the cap: the runtime should still say "ran out of memory")
;;   other -> guest error "unknown operation"
(module
  (import "wasmbus" "__guest_request"  (func $guest_request  (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wasmbus" "__guest_error"    (func $guest_error    (param i32 i32)))

  (memory (export "memory") 1)

  (data (i32.const 16) "Ping")               ;; 4
  (data (i32.const 24) "pong")               ;; 4
  (data (i32.const 32) "Hog")                ;; 3
  (data (i32.const 40) "Grow")               ;; 4
  (data (i32.const 48) "unknown operation")  ;; 17
  (data (i32.const 72) "Double")             ;; 6

  ;; Request buffers start at 1024 (operation, then payload); grow memory to fit them.
  (func $receive (param $op_len i32) (param $len i32)
    (local $need i64)
    (local.set $need (i64.add (i64.const 1024)
      (i64.add (i64.extend_i32_u (local.get $op_len)) (i64.extend_i32_u (local.get $len)))))
    (if (i64.gt_u (local.get $need) (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
      (then (drop (memory.grow (i32.wrap_i64 (i64.shr_u (local.get $need) (i64.const 16)))))))
    (call $guest_request (i32.const 1024) (i32.add (i32.const 1024) (local.get $op_len))))

  (func $is (param $op_len i32) (param $c i32) (param $cn i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $op_len) (local.get $cn)) (then (return (i32.const 0))))
    (loop $each
      (if (i32.lt_u (local.get $i) (local.get $cn))
        (then
          (if (i32.ne (i32.load8_u (i32.add (i32.const 1024) (local.get $i)))
                      (i32.load8_u (i32.add (local.get $c) (local.get $i))))
            (then (return (i32.const 0))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each))))
    (i32.const 1))

  ;; Grow 16 pages (1 MiB) at a time until the host refuses.
  (func $grow_until_refused
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))))

  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (call $receive (local.get $op_len) (local.get $len))
    (if (call $is (local.get $op_len) (i32.const 16) (i32.const 4))
      (then (call $guest_response (i32.const 24) (i32.const 4)) (return (i32.const 1))))
    (if (call $is (local.get $op_len) (i32.const 32) (i32.const 3))
      (then (call $grow_until_refused) (unreachable)))
    (if (call $is (local.get $op_len) (i32.const 40) (i32.const 4))
      (then
        (call $grow_until_refused)
        (i32.store (i32.const 0) (memory.size))
        (call $guest_response (i32.const 0) (i32.const 4))
        (return (i32.const 1))))
    (if (call $is (local.get $op_len) (i32.const 72) (i32.const 6))
      (then
        (if (i32.eq (memory.grow (i32.sub (i32.const 65) (memory.size))) (i32.const -1))
          (then (unreachable)))
        (if (i32.eq (memory.grow (memory.size)) (i32.const -1)) (then (unreachable)))
        (call $guest_response (i32.const 24) (i32.const 4))
        (return (i32.const 1))))
    (call $guest_error (i32.const 48) (i32.const 17))
    (i32.const 0))
)
