#!/usr/bin/env bash
# Apply the branch protection this project relies on, through the GitHub REST API.
#
#   GITHUB_TOKEN=<token with repo admin> scripts/branch-protection.sh <owner>/<repo> [branch]
#   scripts/branch-protection.sh --dry-run <owner>/<repo> [branch]    # print, change nothing
#
# Idempotent: PUT /repos/{owner}/{repo}/branches/{branch}/protection replaces the whole rule set
# with exactly the one below, so running it twice leaves the same state. It prints the rules it
# applies and then what GitHub reports back. Uses `gh api` when gh is installed, curl otherwise.
#
# The rules (see docs/policy-gates.md for why each exists):
#   - pull requests only, 1+ approving review, stale approvals dismissed on new commits, code owner
#     review required, and the last push must be approved by someone other than its author;
#   - required status checks: the ci workflow's jobs "lint" and "test", on the latest main (strict);
#   - conversations resolved, linear history, no force pushes, no deletions;
#   - enforced for administrators too.
set -euo pipefail

dry_run=false
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=true
  shift
fi
repo="${1:?usage: branch-protection.sh [--dry-run] <owner>/<repo> [branch]}"
branch="${2:-main}"
if [[ ! "$repo" =~ ^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$ ]]; then
  echo "not an owner/repo: $repo" >&2
  exit 2
fi
if [[ ! "$branch" =~ ^[A-Za-z0-9._/-]+$ ]]; then
  echo "not a branch name: $branch" >&2
  exit 2
fi

# The ci workflow's job names (.github/workflows/ci.yml `name:` of each job). A rename there must
# be made here too, or merging blocks on a check that never reports.
required_checks=(lint test)

# app_id 15368 is GitHub Actions: a status with the same name posted by anything else (another
# app, or a token through the statuses API) does not satisfy the rule.
checks_json=$(printf '{"context":"%s","app_id":15368},' "${required_checks[@]}")
rules=$(cat <<JSON
{
  "required_status_checks": {
    "strict": true,
    "checks": [${checks_json%,}]
  },
  "enforce_admins": true,
  "required_pull_request_reviews": {
    "required_approving_review_count": 1,
    "dismiss_stale_reviews": true,
    "require_code_owner_reviews": true,
    "require_last_push_approval": true
  },
  "restrictions": null,
  "required_linear_history": true,
  "allow_force_pushes": false,
  "allow_deletions": false,
  "required_conversation_resolution": true,
  "block_creations": false,
  "lock_branch": false
}
JSON
)

endpoint="repos/${repo}/branches/${branch}/protection"
echo "Applying to ${repo}@${branch}:"
echo "$rules"

if $dry_run; then
  echo "(dry run: nothing sent)"
  exit 0
fi

if command -v gh > /dev/null; then
  gh api --method PUT -H "Accept: application/vnd.github+json" -H "X-GitHub-Api-Version: 2022-11-28" \
    "$endpoint" --input - <<<"$rules" > /dev/null
  applied=$(gh api -H "Accept: application/vnd.github+json" "$endpoint")
else
  : "${GITHUB_TOKEN:?set GITHUB_TOKEN (repository administration: write) or install gh}"
  api="${GITHUB_API_URL:-https://api.github.com}"
  curl --fail-with-body --silent --show-error -X PUT \
    -H "Authorization: Bearer ${GITHUB_TOKEN}" -H "Accept: application/vnd.github+json" \
    -H "X-GitHub-Api-Version: 2022-11-28" "${api}/${endpoint}" --data-binary @- <<<"$rules" > /dev/null
  applied=$(curl --fail-with-body --silent --show-error \
    -H "Authorization: Bearer ${GITHUB_TOKEN}" -H "Accept: application/vnd.github+json" \
    -H "X-GitHub-Api-Version: 2022-11-28" "${api}/${endpoint}")
fi

echo "GitHub now reports for ${repo}@${branch}:"
if command -v jq > /dev/null; then
  jq '{
    required_checks: [.required_status_checks.checks[]?.context],
    strict: .required_status_checks.strict,
    reviews: .required_pull_request_reviews.required_approving_review_count,
    dismiss_stale: .required_pull_request_reviews.dismiss_stale_reviews,
    code_owners: .required_pull_request_reviews.require_code_owner_reviews,
    enforce_admins: .enforce_admins.enabled,
    linear_history: .required_linear_history.enabled,
    force_pushes: .allow_force_pushes.enabled,
    deletions: .allow_deletions.enabled
  }' <<<"$applied"
else
  echo "$applied"
fi
