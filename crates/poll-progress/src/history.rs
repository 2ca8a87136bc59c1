//! How many history events this execution has spent, for the 25,000-event budget (`dms_core::rules::history`).

use std::future::Future;

use dms_core::errors::{classify_sdk_error, StepError};

/// IAM action of the adapter (the stack's policy is derived from this string).
const GET_EXECUTION_HISTORY_ACTION: &str = "states:GetExecutionHistory";

pub trait History {
    /// The number of events in the execution's history so far; None outside Step Functions.
    fn events_so_far(
        &self,
        execution_arn: &str,
    ) -> impl Future<Output = Result<Option<u64>, StepError>> + Send;
}

pub struct SfnHistory {
    client: aws_sdk_sfn::Client,
}

impl SfnHistory {
    pub fn new(client: aws_sdk_sfn::Client) -> Self {
        SfnHistory { client }
    }
}

impl History for SfnHistory {
    /// One page of one event, newest first: events are numbered from one in order
    /// (https://docs.aws.amazon.com/step-functions/latest/apireference/API_HistoryEvent.html), so its `id` is
    /// the count. The largest id of the page is taken, so a server that ignores `maxResults` or
    /// `reverseOrder` still gives the right count.
    async fn events_so_far(&self, execution_arn: &str) -> Result<Option<u64>, StepError> {
        if !execution_arn.starts_with("arn:") {
            // `local`: run outside Step Functions (tests, the CLI): no history to count.
            return Ok(None);
        }
        let out = self
            .client
            .get_execution_history()
            .execution_arn(execution_arn)
            .reverse_order(true)
            .max_results(1)
            .include_execution_data(false)
            .send()
            .await
            .map_err(|e| classify_sdk_error(GET_EXECUTION_HISTORY_ACTION, execution_arn, &e))?;
        Ok(out
            .events()
            .iter()
            .map(|e| e.id())
            .max()
            .and_then(|id| u64::try_from(id).ok()))
    }
}
