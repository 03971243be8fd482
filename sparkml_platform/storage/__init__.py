"""Where data lives and how it is read and written: files on local disk, HDFS and S3,
Delta tables in the lake, the point-in-time join, feature-table and training-set records,
statistics, locks and leases, online stores and the request log."""
