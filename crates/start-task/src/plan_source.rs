//! Where start-task reads the plan file: `dms-plan.json` in the stack's bucket (the environment's
//! `PLAN_BUCKET`). `S3PlanSource` is the real adapter; tests pass a fake implementing `PlanSource`.

use std::future::Future;

use aws_sdk_s3::operation::get_object::GetObjectError;
use dms_core::errors::{classify_sdk_error, ErrorName, StepError};

use crate::plan_file::{MAX_PLAN_BYTES, PLAN_KEY};

pub trait PlanSource {
    /// `s3://bucket/key`, for messages; None when the stack names no bucket.
    fn location(&self) -> Option<String>;
    /// The plan file's bytes; None when there is none.
    fn read(&self) -> impl Future<Output = Result<Option<Vec<u8>>, StepError>> + Send;
}

pub struct S3PlanSource {
    client: aws_sdk_s3::Client,
    bucket: Option<String>,
}

impl S3PlanSource {
    pub fn new(client: aws_sdk_s3::Client, bucket: Option<String>) -> Self {
        S3PlanSource { client, bucket }
    }
}

impl PlanSource for S3PlanSource {
    fn location(&self) -> Option<String> {
        self.bucket.as_ref().map(|b| format!("s3://{b}/{PLAN_KEY}"))
    }

    async fn read(&self) -> Result<Option<Vec<u8>>, StepError> {
        let Some(bucket) = &self.bucket else {
            return Ok(None);
        };
        // A missing key is 404 NoSuchKey only for a caller that may also s3:ListBucket; without it S3
        // answers 403 AccessDenied (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html),
        // so the role has both.
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(PLAN_KEY)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
                return Ok(None)
            }
            Err(e) => return Err(classify_sdk_error("s3:GetObject", bucket, &e)),
        };
        if out.content_length().unwrap_or(0) as u64 > MAX_PLAN_BYTES as u64 {
            return Err(StepError::new(
                ErrorName::PlanInvalid,
                format!(
                    "s3://{bucket}/{PLAN_KEY} holds {} bytes, more than a plan ({MAX_PLAN_BYTES} bytes at most)",
                    out.content_length().unwrap_or(0)
                ),
            ));
        }
        let bytes = out.body.collect().await.map_err(|e| {
            StepError::new(
                ErrorName::AwsTransient,
                format!("s3://{bucket}/{PLAN_KEY} could not be read to the end: {e}"),
            )
        })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }
}
