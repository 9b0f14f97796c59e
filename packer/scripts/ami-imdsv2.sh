#!/bin/sh
# Make the AMI just built IMDSv2-only (ImdsSupport v2.0): instances launched from it
# refuse IMDSv1 unless their own launch settings say otherwise. Packer 1.6's built-in
# amazon-ebs cannot set it, so the shell-local post-processor runs this with the AMI's
# name and every region it was copied to. Needs the AWS CLI (v2.9 or v1.27 or later) and
# the build's credentials; IMDSV2_ONLY=false (-var aws_imdsv2_only=false) skips it.
#   AMI_NAME=metlo-appliance-… REGIONS="us-east-1 eu-west-1" packer/scripts/ami-imdsv2.sh
set -eu

AWS=${AWS:-aws}
if [ -n "${PACKER_BUILDER_TYPE:-}" ] && [ "$PACKER_BUILDER_TYPE" != "amazon-ebs" ]; then
	exit 0 # the post-processor's only= keeps other builds away; this keeps them away too
fi
if [ "${IMDSV2_ONLY:-true}" = "false" ]; then
	echo "ami-imdsv2: skipped (aws_imdsv2_only=false); instances may use IMDSv1"
	exit 0
fi
: "${AMI_NAME:?AMI_NAME is not set}" "${REGIONS:?REGIONS is not set}"
if ! command -v "$AWS" >/dev/null 2>&1; then
	echo "ami-imdsv2: the AWS CLI ($AWS) is needed to make $AMI_NAME IMDSv2-only; install it, or build with -var aws_imdsv2_only=false" >&2
	exit 1
fi
for region in $REGIONS; do
	id=$("$AWS" ec2 describe-images --region "$region" --owners self \
		--filters "Name=name,Values=$AMI_NAME" --query 'Images[0].ImageId' --output text)
	if [ -z "$id" ] || [ "$id" = "None" ]; then
		echo "ami-imdsv2: no AMI named $AMI_NAME in $region" >&2
		exit 1
	fi
	"$AWS" ec2 modify-image-attribute --region "$region" --image-id "$id" --imds-support v2.0
	echo "ami-imdsv2: $id in $region is IMDSv2-only"
done
