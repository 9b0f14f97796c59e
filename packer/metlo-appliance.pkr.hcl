# metlo-appliance images: an AWS AMI (amazon-ebs) and a GCE image (googlecompute) built
# from Debian's official cloud images. Valid for Packer 1.6.6 (built-in builders); with
# Packer >= 1.7 install the pinned plugins first: `packer init packer/plugins`.
#
#   packer build -only=amazon-ebs.aws -var aws_region=eu-west-1 packer/
#   packer build -only=googlecompute.gcp -var gcp_project=my-project packer/
#
# Each build appends its image ids to bin/packer-manifest.json.

variable "image_name" {
  type        = string
  default     = "metlo-appliance"
  description = "Image name prefix (AMI name / GCE image family)."
}

variable "image_version" {
  type        = string
  default     = "dev"
  description = "Appliance version: stamped into the binary and the image name."
}

variable "arch" {
  type        = string
  default     = "amd64"
  description = "CPU architecture of the image and binary: amd64 or arm64."
}

variable "debian_release" {
  type        = string
  default     = "13"
  description = "Debian major release of the base image (13 = trixie, 12 = bookworm)."
}

variable "aws_region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region the AMI is built in."
}

variable "aws_instance_type" {
  type        = string
  default     = "c6i.large"
  description = "Builder instance type (arm64: c7g.large)."
}

variable "aws_ami_regions" {
  type        = list(string)
  default     = []
  description = "Other regions to copy the AMI to."
}

variable "aws_subnet_id" {
  type        = string
  default     = ""
  description = "Subnet of the builder instance (default: the default VPC)."
}

variable "aws_imdsv2_only" {
  type        = bool
  default     = true
  description = "Make the AMI IMDSv2-only (ImdsSupport v2.0), with the AWS CLI after the build."
}

variable "gcp_project" {
  type        = string
  default     = ""
  description = "GCP project the image is built in (required for the GCE image)."
}

variable "gcp_zone" {
  type        = string
  default     = "us-central1-a"
  description = "Zone of the builder VM."
}

variable "gcp_machine_type" {
  type        = string
  default     = "e2-standard-2"
  description = "Builder machine type (arm64: t2a-standard-2)."
}

locals {
  # GCE image names: lowercase letters, digits and dashes.
  safe_version = lower(regex_replace(var.image_version, "[^a-zA-Z0-9-]", "-"))
  stamp        = formatdate("YYYYMMDDhhmmss", timestamp())
  image_id     = "${var.image_name}-${local.safe_version}-${var.arch}-${local.stamp}"
  gcp_arch     = var.arch == "arm64" ? "-arm64" : ""
}

source "amazon-ebs" "aws" {
  region          = var.aws_region
  instance_type   = var.aws_instance_type
  subnet_id       = var.aws_subnet_id
  ami_name        = local.image_id
  ami_description = "metlo-appliance ${var.image_version} on Debian ${var.debian_release} (${var.arch})"
  ami_regions     = var.aws_ami_regions
  ena_support     = true
  sriov_support   = true
  ssh_username    = "admin"

  source_ami_filter {
    filters = {
      name                = "debian-${var.debian_release}-${var.arch}-*"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"] # Debian's official AWS account
    most_recent = true
  }

  tags = {
    Name        = local.image_id
    Application = "metlo-appliance"
    Version     = var.image_version
  }
}

source "googlecompute" "gcp" {
  project_id              = var.gcp_project
  zone                    = var.gcp_zone
  machine_type            = var.gcp_machine_type
  source_image_family     = "debian-${var.debian_release}${local.gcp_arch}"
  source_image_project_id = ["debian-cloud"]
  image_name              = local.image_id
  image_family            = var.image_name
  image_description       = "metlo-appliance ${var.image_version} on Debian ${var.debian_release} (${var.arch})"
  ssh_username            = "packer"

  image_labels = {
    application = "metlo-appliance"
    version     = local.safe_version
  }
}

build {
  sources = ["source.amazon-ebs.aws", "source.googlecompute.gcp"]

  # Build the static binary with the Makefile on the machine running Packer; one output
  # per source, so parallel builds of both clouds never share a file.
  provisioner "shell-local" {
    inline = [
      "cd '${path.root}/..' && make build GOOS=linux GOARCH=${var.arch} VERSION=${var.image_version} BIN=bin/metlo-appliance-${source.name}-${var.arch}",
    ]
  }

  provisioner "file" {
    source      = "${path.root}/../bin/metlo-appliance-${source.name}-${var.arch}"
    destination = "/tmp/metlo-appliance"
    generated   = true # built by the step above, not there at validate time
  }

  provisioner "file" {
    source      = "${path.root}/files"
    destination = "/tmp/metlo-appliance-files"
  }

  provisioner "file" {
    source      = "${path.root}/scripts/install.sh"
    destination = "/tmp/metlo-appliance-install.sh"
  }

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BIN=/tmp/metlo-appliance",
      "FILES=/tmp/metlo-appliance-files",
    ]
    inline = [
      "sh /tmp/metlo-appliance-install.sh",
      "rm -rf /tmp/metlo-appliance /tmp/metlo-appliance-files /tmp/metlo-appliance-install.sh",
    ]
  }

  post-processors {
    # Every build's image ids (AMI per region, GCE image), for scripts and release notes.
    post-processor "manifest" {
      output     = "${path.root}/../bin/packer-manifest.json"
      strip_path = true
      custom_data = {
        version = var.image_version
        arch    = var.arch
      }
    }
    # Packer 1.6's built-in amazon-ebs has no imds_support: set it on the AMI (and its
    # copies) once they exist.
    post-processor "shell-local" {
      only = ["amazon-ebs.aws"]
      environment_vars = [
        "AMI_NAME=${local.image_id}",
        "REGIONS=${join(" ", concat([var.aws_region], var.aws_ami_regions))}",
        "IMDSV2_ONLY=${var.aws_imdsv2_only}",
      ]
      script = "${path.root}/scripts/ami-imdsv2.sh"
    }
  }
}
