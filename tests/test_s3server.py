"""The S3 test server itself: range reads and deferred commits behave like S3."""


def test_range_reads_and_deferred_commit(s3):
    fs = s3.fs
    fs.pipe(f"{s3.bucket}/x.bin", bytes(range(256)) * 4)
    assert fs.cat_ranges([f"{s3.bucket}/x.bin"] * 2, [0, 300], [4, 302]) == [
        bytes([0, 1, 2, 3]),
        bytes([44, 45]),
    ]
    f = fs.open(f"{s3.bucket}/y.bin", "wb", autocommit=False)
    f.write(b"abc" * 3_000_000)  # > 5 MiB: a real multipart upload
    f.close()
    fs.invalidate_cache()
    assert not fs.exists(f"{s3.bucket}/y.bin")
    f.commit()
    fs.invalidate_cache()
    assert fs.size(f"{s3.bucket}/y.bin") == 9_000_000
